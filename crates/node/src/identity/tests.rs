use super::*;
use crate::pki::{generate_key, key_from_pem, make_csr, Authority};

const OVERLAY: &str = "test.p2psip.example";
const RSA_KEY: &str = include_str!("../../tests/data/rsa-2048.key.pem");

fn node(v: u128) -> NodeId {
    NodeId::from_u128(v)
}

struct Overlay {
    ca: Authority,
}

impl Overlay {
    fn new() -> Self {
        Overlay {
            ca: Authority::create(OVERLAY, SystemTime::now()).unwrap(),
        }
    }

    fn trust(&self) -> TrustStore {
        TrustStore::new(OVERLAY, 16, vec![self.ca.cert_der.clone()], Vec::new())
    }

    fn member_with_key(&self, key: KeyPair, user: &str, ids: &[NodeId]) -> CertSecurity {
        let csr = make_csr(&key, user).unwrap();
        let cert = self.ca.issue_node(&csr, user, ids, OVERLAY, SystemTime::now()).unwrap();
        CertSecurity::new(key, cert.to_vec(), ids[0], self.trust()).unwrap()
    }

    fn member(&self, user: &str, id: u128) -> CertSecurity {
        self.member_with_key(generate_key().unwrap(), user, &[node(id)])
    }
}

#[test]
fn a_signature_verifies_with_the_signers_certificate_and_names_the_signer() {
    let overlay = Overlay::new();
    let (alice, bob) = (overlay.member("alice@x", 1), overlay.member("bob@x", 2));
    let sig = alice.sign(b"overlay||tid||contents||identity");
    assert_eq!(sig.algorithm, SignatureAndHashAlgorithm { hash: 8, signature: 7 });
    let credential = bob
        .verify(b"overlay||tid||contents||identity", &sig, &alice.certificates())
        .unwrap();
    assert_eq!(credential.user, "alice@x");
    assert_eq!(credential.node_ids, vec![node(1)]);
    assert_eq!(
        credential.signer_node_id,
        Some(node(1)),
        "cert_hash: the only Node-ID signs"
    );
}

#[test]
fn a_changed_input_or_signature_is_refused() {
    let overlay = Overlay::new();
    let (alice, bob) = (overlay.member("alice@x", 1), overlay.member("bob@x", 2));
    let mut sig = alice.sign(b"input");
    assert_eq!(
        bob.verify(b"inpuT", &sig, &alice.certificates()),
        Err(SecurityError::BadSignature)
    );
    sig.signature_value[0] ^= 1;
    assert_eq!(
        bob.verify(b"input", &sig, &alice.certificates()),
        Err(SecurityError::BadSignature)
    );
}

#[test]
fn an_unseen_signer_is_unknown_until_its_certificate_arrives_then_remembered() {
    let overlay = Overlay::new();
    let (alice, bob) = (overlay.member("alice@x", 1), overlay.member("bob@x", 2));
    let sig = alice.sign(b"m");
    assert_eq!(bob.verify(b"m", &sig, &[]), Err(SecurityError::UnknownSigner));
    assert!(bob.verify(b"m", &sig, &alice.certificates()).is_ok());
    assert!(bob.verify(b"m", &sig, &[]).is_ok(), "kept for stored data (§6.3.4)");
    let signer = sig.identity.clone();
    assert_eq!(bob.certificates_for(&[&signer]), alice.certificates());
    assert!(
        bob.certificates_for(&[&bob.identity()]).is_empty(),
        "own certificate goes anyway"
    );
}

#[test]
fn a_certificate_from_another_ca_does_not_vouch() {
    let (ours, theirs) = (Overlay::new(), Overlay::new());
    let bob = ours.member("bob@x", 2);
    let mallory = theirs.member("mallory@x", 3);
    let sig = mallory.sign(b"m");
    assert_eq!(
        bob.verify(b"m", &sig, &mallory.certificates()),
        Err(SecurityError::UnknownSigner)
    );
}

#[test]
fn an_unsigned_message_is_anonymous() {
    let overlay = Overlay::new();
    let bob = overlay.member("bob@x", 2);
    assert_eq!(
        bob.verify(b"m", &Signature::anonymous(), &[]),
        Err(SecurityError::Anonymous)
    );
}

#[test]
fn rsa_signatures_verify() {
    let overlay = Overlay::new();
    let rsa = overlay.member_with_key(key_from_pem(RSA_KEY).unwrap(), "rsa@x", &[node(5)]);
    let bob = overlay.member("bob@x", 2);
    let sig = rsa.sign(b"m");
    assert_eq!(sig.algorithm, SignatureAndHashAlgorithm { hash: 4, signature: 1 });
    assert_eq!(bob.verify(b"m", &sig, &rsa.certificates()).unwrap().user, "rsa@x");
}

#[test]
fn a_certificate_with_several_node_ids_signs_as_one_of_them() {
    let overlay = Overlay::new();
    let multi = overlay.member_with_key(generate_key().unwrap(), "m@x", &[node(7), node(8)]);
    assert!(matches!(multi.identity(), SignerIdentity::CertHashNodeId { .. }));
    let bob = overlay.member("bob@x", 2);
    let credential = bob.verify(b"m", &multi.sign(b"m"), &multi.certificates()).unwrap();
    assert_eq!(credential.signer_node_id, Some(node(7)));
}

#[test]
fn a_node_id_the_certificate_does_not_carry_is_refused_at_start() {
    let overlay = Overlay::new();
    let key = generate_key().unwrap();
    let csr = make_csr(&key, "a@x").unwrap();
    let cert = overlay
        .ca
        .issue_node(&csr, "a@x", &[node(1)], OVERLAY, SystemTime::now())
        .unwrap();
    assert!(matches!(
        CertSecurity::new(key, cert.to_vec(), node(2), overlay.trust()),
        Err(PkiError::NoNodeId)
    ));
}

/// The verified-signature memory: a node's own signatures and those it
/// checked once pass again without the public-key operation, but only for
/// exactly the input they were made over, and with the signer named as a
/// full check would name it.
#[test]
fn a_remembered_good_signature_passes_again_only_over_the_same_input() {
    let overlay = Overlay::new();
    let (alice, bob) = (overlay.member("alice@x", 1), overlay.member("bob@x", 2));
    // Alice's own signature: remembered when made.
    let own = alice.sign(b"a request alice routes to herself");
    assert_eq!(alice.verifier().verified().signers.len(), 1);
    let credential = alice.verify(b"a request alice routes to herself", &own, &[]).unwrap();
    assert_eq!(
        (credential.user.as_str(), credential.signer_node_id),
        ("alice@x", Some(node(1)))
    );
    assert_eq!(
        alice.verify(b"a request alice routes to herselF", &own, &[]),
        Err(SecurityError::BadSignature),
        "another input is checked in full"
    );
    // Bob checks one of alice's signatures once; the second time it is
    // remembered and names the same signer.
    let first = bob.verify(b"a stored value", &own_value(&alice), &alice.certificates());
    let again = bob.verify(b"a stored value", &own_value(&alice), &[]);
    assert_eq!(first, again);
    assert!(bob
        .verifier()
        .verified()
        .signers
        .contains_key(&signature_key(&own_value(&alice), b"a stored value")));
    let mut forged = own_value(&alice);
    forged.signature_value[5] ^= 0x40;
    assert_eq!(
        bob.verify(b"a stored value", &forged, &[]),
        Err(SecurityError::BadSignature)
    );
}

fn own_value(signer: &CertSecurity) -> Signature {
    signer.sign(b"a stored value")
}

#[test]
fn the_verified_signature_memory_is_bounded() {
    let mut memory = VerifiedSignatures::default();
    let found = FoundSigner {
        key: vec![1],
        der: Arc::from(&b"der"[..]),
        node: None,
    };
    for i in 0..(VERIFIED_LIMIT as u32 + 10) {
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&i.to_be_bytes());
        memory.insert(key, found.clone());
    }
    assert_eq!(memory.signers.len(), VERIFIED_LIMIT);
    assert_eq!(memory.order.len(), VERIFIED_LIMIT);
    assert!(!memory.signers.contains_key(&[0u8; 32]), "the oldest went first");
}

/// Ed25519 certificates hand their raw key to the faster verifier; other
/// key types keep webpki's. Both refuse a signature by another key.
#[test]
fn ed25519_keys_are_read_from_certificates_and_other_keys_are_not() {
    let overlay = Overlay::new();
    let alice = overlay.member("alice@x", 1);
    let rsa = overlay.member_with_key(key_from_pem(RSA_KEY).unwrap(), "rsa@x", &[node(5)]);
    let info = |m: &CertSecurity| crate::pki::cert_info(&m.certificates()[0].certificate, OVERLAY, 16).unwrap();
    assert!(info(&alice).ed25519_key.is_some());
    assert_eq!(info(&rsa).ed25519_key, None);
    // Mallory's Ed25519 signature presented under alice's identity.
    let mallory = overlay.member("mallory@x", 9);
    let mut forged = mallory.sign(b"m");
    forged.identity = alice.identity();
    let bob = overlay.member("bob@x", 2);
    assert_eq!(
        bob.verify(b"m", &forged, &alice.certificates()),
        Err(SecurityError::BadSignature)
    );
}

/// Decision 0010: an Ed25519 node signs with ed25519-dalek, and the
/// signature is the one ring makes (Ed25519 is deterministic, RFC 8032
/// §5.1.6), so every verifier takes it; other key types sign with ring.
#[test]
fn ed25519_keys_sign_with_dalek_and_the_signature_is_rings() {
    let overlay = Overlay::new();
    let key = generate_key().unwrap();
    let by_ring = key.sign(b"input").unwrap();
    let alice = overlay.member_with_key(key, "alice@x", &[node(1)]);
    assert!(alice.node.ed25519.is_some(), "the fast path is taken");
    assert_eq!(alice.sign(b"input").signature_value, by_ring);
    let rsa = overlay.member_with_key(key_from_pem(RSA_KEY).unwrap(), "rsa@x", &[node(5)]);
    assert!(rsa.node.ed25519.is_none());
    let bob = overlay.member("bob@x", 2);
    assert!(bob.verify(b"r", &rsa.sign(b"r"), &rsa.certificates()).is_ok());
}

/// RFC 6940 §11.1, live: a node put on the bad-node list is refused at
/// once, even with its certificate's verdict remembered, and trusted
/// again once taken off.
#[test]
fn the_bad_node_list_applies_to_remembered_certificates_both_ways() {
    let overlay = Overlay::new();
    let (alice, bob) = (overlay.member("alice@x", 1), overlay.member("bob@x", 2));
    let input = |n: u8| vec![n; 32];
    assert!(bob
        .verify(&input(1), &alice.sign(&input(1)), &alice.certificates())
        .is_ok());
    bob.verifier().trust().set_bad_nodes(vec![node(1)]);
    assert_eq!(
        bob.verify(&input(2), &alice.sign(&input(2)), &alice.certificates()),
        Err(SecurityError::UnknownSigner)
    );
    bob.verifier().trust().set_bad_nodes(Vec::new());
    assert!(bob
        .verify(&input(3), &alice.sign(&input(3)), &alice.certificates())
        .is_ok());
    // First seen while listed: the verdict kept must not hold the listing.
    let carol = overlay.member("carol@x", 3);
    bob.verifier().trust().set_bad_nodes(vec![node(3)]);
    assert!(bob
        .verify(&input(4), &carol.sign(&input(4)), &carol.certificates())
        .is_err());
    bob.verifier().trust().set_bad_nodes(Vec::new());
    assert!(bob
        .verify(&input(5), &carol.sign(&input(5)), &carol.certificates())
        .is_ok());
}
