use super::*;
use crate::config_doc::kind_block;
use crate::identity::CertSecurity;
use crate::pki::{generate_key, make_csr, Authority, TrustStore};
use overlay::AccessPolicy;
use reload_wire::DataModel;
use std::time::SystemTime;

const OVERLAY: &str = "judge.p2psip.example";

struct Setup {
    ca: Authority,
    signer: CertSecurity,
    /// An enrolled node that is no signer.
    mallory: CertSecurity,
    config: Configuration,
}

fn member(ca: &Authority, name: &str, id: u128) -> CertSecurity {
    let now = SystemTime::now();
    let key = generate_key().unwrap();
    let id = NodeId::from_u128(id);
    let cert = ca
        .issue_node(
            &make_csr(&key, name).unwrap(),
            &format!("{name}@x"),
            &[id],
            OVERLAY,
            now,
        )
        .unwrap();
    let trust = TrustStore::new(OVERLAY, 16, vec![ca.cert_der.clone()], Vec::new());
    CertSecurity::new(key, cert.to_vec(), id, trust).unwrap()
}

fn setup() -> Setup {
    let ca = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let signer = member(&ca, "signer", 0x5151);
    let mallory = member(&ca, "mallory", 0x6666);
    let mut config = Configuration::new(OVERLAY);
    config.sequence = 4;
    config.root_certs = vec![ca.cert_der.clone()];
    config.configuration_signers = vec![signer.node_id()];
    config.kind_signers = vec![signer.node_id()];
    Setup {
        ca,
        signer,
        mallory,
        config,
    }
}

fn judge(s: &Setup) -> DocumentJudge {
    DocumentJudge::new(&s.config.to_signed_document(&s.signer), s.ca.cert_der.to_vec()).unwrap()
}

fn new_kind() -> KindDefinition {
    KindDefinition {
        id: 0x4000_0042,
        name: "kind-1073741890".into(),
        data_model: DataModel::Array,
        access: AccessPolicy::NodeMatch,
        max_count: 8,
        max_size: 512,
    }
}

#[test]
fn a_newer_document_from_the_configuration_signer_is_taken_with_its_new_kind() {
    let s = setup();
    let mut next = s.config.clone();
    next.sequence = 5;
    next.kinds.push(new_kind());
    let judged = judge(&s)
        .judge_document(next.to_signed_document(&s.signer).as_bytes())
        .unwrap();
    assert_eq!(judged.configuration_sequence, 5);
    assert_eq!(judged.kind(new_kind().id), Some(&new_kind()));
}

/// §11.1: "signed by one of the configuration-signer elements from the
/// previous extant configuration". An enrolled node that names itself a
/// signer in its own document does not get to sign.
#[test]
fn a_member_that_names_itself_signer_is_refused() {
    let s = setup();
    let mut forged = s.config.clone();
    forged.sequence = 9;
    forged.configuration_signers = vec![s.mallory.node_id()];
    forged.kind_signers = vec![s.mallory.node_id()];
    let refusal = judge(&s)
        .judge_document(forged.to_signed_document(&s.mallory).as_bytes())
        .unwrap_err();
    assert!(matches!(refusal, ConfigRefusal::NotSigned(_)), "{refusal:?}");
    let tampered = s
        .config
        .to_signed_document(&s.signer)
        .replace("<initial-ttl>100", "<initial-ttl>101");
    let refusal = judge(&s).judge_document(tampered.as_bytes()).unwrap_err();
    assert!(matches!(refusal, ConfigRefusal::NotSigned(_)), "{refusal:?}");
    for junk in [&b"\xff\xfe"[..], b"<overlay/>", b""] {
        let refusal = judge(&s).judge_document(junk).unwrap_err();
        assert!(matches!(refusal, ConfigRefusal::Invalid(_)), "{refusal:?}");
    }
}

#[test]
fn a_document_that_drops_the_pinned_ca_cannot_be_run() {
    let s = setup();
    let other = Authority::create(OVERLAY, SystemTime::now()).unwrap();
    let mut next = s.config.clone();
    next.sequence = 5;
    next.root_certs = vec![other.cert_der.clone()];
    let document = next.to_signed_document(&s.signer);
    let mut j = judge(&s);
    assert!(j.judge_document(document.as_bytes()).is_ok(), "correctly signed");
    let refusal = j.check_runnable(document.as_bytes()).unwrap_err();
    assert!(matches!(refusal, ConfigRefusal::Incompatible(_)), "{refusal:?}");
}

/// §11.1: the operator revoked this node; another node runs the same
/// document.
#[test]
fn a_document_listing_this_node_as_a_bad_node_cannot_be_run_by_it() {
    let s = setup();
    let me = NodeId::from_u128(0x77);
    let mut next = s.config.clone();
    next.sequence = 5;
    next.bad_nodes = vec![me];
    let document = next.to_signed_document(&s.signer);
    let refusal = judge(&s)
        .for_node(&[me])
        .check_runnable(document.as_bytes())
        .unwrap_err();
    assert!(
        matches!(&refusal, ConfigRefusal::Revoked(id) if *id == me.to_hex()),
        "{refusal:?}"
    );
    let other = NodeId::from_u128(0x78);
    assert!(judge(&s).for_node(&[other]).check_runnable(document.as_bytes()).is_ok());
}

/// The signers of the adopted document judge the next one.
#[test]
fn after_adopting_a_document_its_signers_sign_the_next() {
    let s = setup();
    let mut j = judge(&s);
    let mut handover = s.config.clone();
    handover.sequence = 5;
    handover.configuration_signers = vec![s.mallory.node_id()];
    let handover = handover.to_signed_document(&s.signer);
    j.judge_document(handover.as_bytes()).unwrap();
    j.adopt(handover.as_bytes());
    let mut next = s.config.clone();
    next.sequence = 6;
    next.configuration_signers = vec![s.mallory.node_id()];
    next.kind_signers = vec![s.mallory.node_id()];
    assert!(j.judge_document(next.to_signed_document(&s.mallory).as_bytes()).is_ok());
    assert!(matches!(
        j.judge_document(s.config.to_signed_document(&s.signer).as_bytes()),
        Err(ConfigRefusal::NotSigned(_))
    ));
}

/// §6.5.4.2: kind blocks signed by a kind-signer are taken; others, and a
/// Kind known from another kind-signer, are refused.
#[test]
fn kind_blocks_need_a_kind_signer_and_may_not_redefine_anothers_kind() {
    let mut s = setup();
    let mut j = judge(&s);
    let block = kind_block(&new_kind(), &s.signer).into_bytes();
    assert_eq!(j.judge_kinds(std::slice::from_ref(&block)).unwrap(), vec![new_kind()]);
    let foreign = kind_block(&new_kind(), &s.mallory).into_bytes();
    assert!(matches!(
        j.judge_kinds(std::slice::from_ref(&foreign)),
        Err(ConfigRefusal::NotSigned(_))
    ));
    // Mallory becomes a kind-signer too, but the Kind is the signer's.
    s.config.kind_signers.push(s.mallory.node_id());
    s.config.kinds.push(new_kind());
    let mut j = judge(&s);
    assert_eq!(
        j.judge_kinds(&[foreign]),
        Err(ConfigRefusal::ConflictingKind(new_kind().name))
    );
    assert!(j.judge_kinds(&[block]).is_ok(), "the Kind's own signer may update it");
    assert!(matches!(
        j.judge_kinds(&[b"<kind-block>".to_vec()]),
        Err(ConfigRefusal::Invalid(_))
    ));
}
