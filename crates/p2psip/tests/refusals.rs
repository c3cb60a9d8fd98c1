//! Hostile peers against a real peer process. A hand-made client, holding
//! keys and certificates the test issued itself from the overlay's CA,
//! tries what a careless or malicious node would: an expired certificate,
//! no certificate, a Join under a Node-ID its certificate does not carry,
//! and Stores that are forged or unsigned. Each is refused with a reason,
//! nothing is stored, and the peer keeps serving.

mod common;

use common::raw_client::{client_config, RawClient};
use common::*;
use node::node_dir::NodeDir;
use node::overlay_dir::OverlayDir;
use node::pki::{make_csr, random_node_id};
use reload_wire::storage::{
    ArrayEntry, ArrayRange, DataValue, FetchReq, ModelSpecifier, StoredData, StoredDataSpecifier, StoredDataValue,
};
use reload_wire::usages::kind_id;
use reload_wire::{Body, Destination, ErrorCode, JoinReq, NodeId, Signature, StoreKindData, StoreReq};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

const OVERLAY: &str = "refusals.p2psip.test";

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// One real peer, alone in its overlay, plus an enrolled node directory
/// for the hand-made client.
struct Scene {
    overlay: Overlay,
    peer: Peer,
    rogue: NodeDir,
}

fn scene(tag: &str) -> Scene {
    let mut overlay = Overlay::create(tag, OVERLAY);
    let peer_dir = overlay.enroll("peer");
    let rogue_dir = overlay.enroll("rogue");
    let peer = overlay.start_peer(&peer_dir, None);
    wait_for(Duration::from_secs(10), "the peer to start the overlay", || {
        status(peer.admin).is_some_and(|s| s.joined)
    });
    let rogue = NodeDir::load(&rogue_dir).unwrap();
    Scene { overlay, peer, rogue }
}

impl Scene {
    /// A certificate for the rogue's key from the overlay's own CA, valid
    /// over `validity`.
    fn certificate(&self, validity: (SystemTime, SystemTime)) -> Vec<u8> {
        let ca = OverlayDir::open(&self.overlay.dir.join("overlay"))
            .unwrap()
            .authority()
            .unwrap();
        let csr = make_csr(&self.rogue.key, &self.rogue.info.user).unwrap();
        ca.issue_node_valid(
            &csr,
            &self.rogue.info.user,
            &self.rogue.info.node_ids,
            OVERLAY,
            validity,
        )
        .unwrap()
        .to_vec()
    }

    fn log_mentions(&self, what: &str) -> bool {
        std::fs::read_to_string(&self.peer.log).is_ok_and(|l| l.contains(what))
    }

    /// A TLS link with `client` does not stay open; the peer logs the
    /// refusal with `reason`, admits no link and keeps serving.
    fn assert_link_refused(&self, client: rustls::ClientConfig, reason: &str) {
        assert!(try_link(self.peer.listen, client).is_err(), "the link stayed open");
        wait_for(Duration::from_secs(5), "the refusal to be logged", || {
            self.log_mentions("refused link from")
        });
        assert!(
            self.log_mentions(reason),
            "the log says why ({reason}): {}",
            std::fs::read_to_string(&self.peer.log).unwrap()
        );
        self.assert_unlinked_and_serving();
        let failures = "p2psip_link_failures_total{direction=\"inbound\"}";
        wait_for(Duration::from_secs(5), "/metrics to count the refused link", || {
            metric(self.peer.admin, failures) == 1.0
        });
    }

    /// The peer has no link to anyone and still answers.
    fn assert_unlinked_and_serving(&self) {
        let s = status(self.peer.admin).expect("the peer keeps serving");
        assert!(s.joined);
        assert!(s.links.is_empty(), "no link was admitted: {:?}", s.links);
    }
}

/// TLS to the peer with the given client configuration; then waits for
/// what the peer does with the link. `Ok(())` if the link stays open for a
/// second, `Err(why)` if the handshake or the first read fails.
fn try_link(peer: SocketAddr, client: rustls::ClientConfig) -> Result<(), String> {
    runtime().block_on(async move {
        let tcp = TcpStream::connect(peer).await.map_err(|e| e.to_string())?;
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        let name = rustls::pki_types::ServerName::IpAddress(peer.ip().into());
        let mut tls = connector.connect(name, tcp).await.map_err(|e| e.to_string())?;
        // TLS 1.3: the client finishes first; the server's verdict on the
        // client certificate arrives as an alert on the first read.
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_secs(1), tls.read(&mut buf)).await {
            Err(_) => Ok(()),
            Ok(Ok(0)) => Err("closed by the peer".into()),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
        }
    })
}

#[test]
fn an_expired_certificate_is_refused_with_the_reason_logged() {
    let s = scene("expired");
    let day = Duration::from_secs(86_400);
    let now = SystemTime::now();
    let expired = s.certificate((now - 30 * day, now - day));
    let config = client_config(s.rogue.config.trust_store(), Some((expired, &s.rogue)));
    s.assert_link_refused(config, "Expired");
}

#[test]
fn a_client_without_a_certificate_is_refused_with_the_reason_logged() {
    let s = scene("nocert");
    let config = client_config(s.rogue.config.trust_store(), None);
    s.assert_link_refused(config, "peer sent no certificates");
}

impl RawClient {
    /// A Store of this node's certificate under CERTIFICATE_BY_NODE (§8)
    /// with the given value signature (None: signed properly).
    fn certificate_store(&self, value_signature: Option<Signature>) -> (Destination, Body) {
        let storage_time = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        self.certificate_value(true, storage_time, 0, value_signature)
    }

    /// A Store of this node's certificate (`exists`) or of its removal,
    /// stored at `storage_time`, as a replica Store when `replica_number`
    /// is not 0 (§7.4.1.1).
    fn certificate_value(
        &self,
        exists: bool,
        storage_time: u64,
        replica_number: u8,
        value_signature: Option<Signature>,
    ) -> (Destination, Body) {
        self.certificate_at(0, exists, storage_time, replica_number, value_signature)
    }

    /// [`Self::certificate_value`] at array index `index`.
    fn certificate_at(
        &self,
        index: u32,
        exists: bool,
        storage_time: u64,
        replica_number: u8,
        value_signature: Option<Signature>,
    ) -> (Destination, Body) {
        use overlay::Signer;
        let resource = overlay::Topology::resource_id(&self.hasher, self.me.as_bytes());
        let value = StoredDataValue::Array(ArrayEntry {
            index,
            value: DataValue {
                exists,
                value: self.security.certificates()[0].certificate.clone(),
            },
        });
        let identity = self.security.identity();
        let signature = value_signature.unwrap_or_else(|| {
            // Array values are signed as at index 0 (RFC 6940 §7.1 with
            // appends, see `data_signature_input`).
            let mut signed = value.clone();
            if let StoredDataValue::Array(a) = &mut signed {
                a.index = 0;
            }
            let input = StoredData::signature_input(
                &resource,
                kind_id::CERTIFICATE_BY_NODE,
                storage_time,
                &signed,
                &identity,
            )
            .unwrap();
            self.security.sign(&input)
        });
        let body = Body::StoreReq(StoreReq {
            resource: resource.clone(),
            replica_number,
            kind_data: vec![StoreKindData {
                kind: kind_id::CERTIFICATE_BY_NODE,
                // A replica Store carries the generation of the copy it
                // replicates (§7.4.1.1); one far ahead, to be taken.
                generation_counter: if replica_number == 0 { 0 } else { 1_000_000 },
                values: vec![StoredData {
                    storage_time,
                    lifetime: 600,
                    value,
                    signature,
                }],
            }],
        });
        (Destination::Resource(resource), body)
    }

    /// What the peer holds of this node's certificate: (exists,
    /// storage_time) of array entry 0.
    async fn held_certificate(&mut self) -> Option<(bool, u64)> {
        let resource = overlay::Topology::resource_id(&self.hasher, self.me.as_bytes());
        let fetch = Body::FetchReq(FetchReq {
            resource: resource.clone(),
            specifiers: vec![StoredDataSpecifier {
                kind: kind_id::CERTIFICATE_BY_NODE,
                generation: 0,
                model_specifier: ModelSpecifier::Array(vec![ArrayRange { first: 0, last: 0 }]),
            }],
        });
        let Body::FetchAns(answer) = self.ask(Destination::Resource(resource), &fetch, None).await else {
            return None;
        };
        let value = answer.kind_responses.first()?.values.first()?;
        let StoredDataValue::Array(entry) = &value.value else {
            return None;
        };
        Some((entry.value.exists, value.storage_time))
    }
}

/// Issue 36: a node that captured a signed value (its own old Store, or
/// anyone's it fetched) cannot bring it back once it was replaced, here by
/// a removal: a replayed Store gets Error_Data_Too_Old (RFC 6940 §7.4.1.1).
/// The same value pushed as a replica Store to the responsible peer, which
/// takes replica Stores from any node (decision 0004), is merged by
/// storage time: the removal stays, and the generation counter, which the
/// push claims is far ahead, does not move. The peer keeps serving.
#[test]
fn a_replayed_store_or_a_forged_replica_push_cannot_bring_an_old_value_back() {
    let s = scene("replay");
    runtime().block_on(async {
        let mut rogue = RawClient::connect(&s.rogue, s.peer.listen).await;
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (to, stored) = rogue.certificate_value(true, now - 2_000, 0, None);
        assert!(matches!(rogue.ask(to.clone(), &stored, None).await, Body::StoreAns(_)));
        let (_, removal) = rogue.certificate_value(false, now - 1_000, 0, None);
        assert!(matches!(rogue.ask(to.clone(), &removal, None).await, Body::StoreAns(_)));
        assert_eq!(rogue.held_certificate().await, Some((false, now - 1_000)));

        let answer = rogue.ask(to.clone(), &stored, None).await;
        assert_error(&answer, ErrorCode::DATA_TOO_OLD, "");
        let (_, pushed) = rogue.certificate_value(true, now - 2_000, 1, None);
        let Body::StoreAns(answer) = rogue.ask(to, &pushed, None).await else {
            panic!("the responsible peer takes replica Stores from anyone");
        };
        assert!(
            answer.kind_responses[0].generation_counter < 1_000,
            "the generation did not move: {answer:?}"
        );
        assert_eq!(
            rogue.held_certificate().await,
            Some((false, now - 1_000)),
            "the removal stays"
        );
    });
    assert!(
        status(s.peer.admin).is_some_and(|st| st.joined),
        "the peer keeps serving"
    );
}

/// Issue 36, decision 0030: the storage quota of the configuration binds
/// a running peer as soon as the operator publishes it. A Store that
/// would take the peer past its `total` is refused with
/// Error_Data_Too_Large naming the limit, nothing of it is kept, a newer
/// value in a slot already held still goes through, and the peer keeps
/// serving.
#[test]
fn a_store_past_the_published_storage_quota_is_refused_and_the_peer_keeps_serving() {
    let s = scene("quota");
    let bytes = || metric(s.peer.admin, "p2psip_stored_bytes");
    wait_for(Duration::from_secs(10), "the peer's own certificates", || {
        status(s.peer.admin).is_some_and(|st| st.stored.len() == 2)
    });
    let own = bytes();
    let now = || {
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64
    };
    let rt = runtime();
    rt.block_on(async {
        let mut rogue = RawClient::connect(&s.rogue, s.peer.listen).await;
        let (to, store) = rogue.certificate_at(0, true, now(), 0, None);
        assert!(matches!(rogue.ask(to, &store, None).await, Body::StoreAns(_)));
    });
    let one = bytes() - own;
    assert!(one > 500.0, "a certificate costs its DER and signature: {one}");

    let total = (own + one + one / 2.0) as u64;
    let default_total = format!("total=\"{}\"", overlay::StorageQuota::DEFAULT.total_bytes);
    s.overlay.publish_config(s.peer.admin, |shown| {
        shown.replacen(&default_total, &format!("total=\"{total}\""), 1)
    });
    wait_for(Duration::from_secs(10), "the peer on sequence 2", || {
        status(s.peer.admin).is_some_and(|st| st.configuration_sequence == 2)
    });

    rt.block_on(async {
        let mut rogue = RawClient::connect(&s.rogue, s.peer.listen).await;
        rogue.configuration = 2;
        let (to, store) = rogue.certificate_at(1, true, now(), 0, None);
        let answer = rogue.ask(to, &store, None).await;
        assert_error(&answer, ErrorCode::DATA_TOO_LARGE, "storage-quota total");
        assert_eq!(bytes(), own + one, "nothing of the refused Store was kept");
        let (to, store) = rogue.certificate_at(0, true, now(), 0, None);
        let answer = rogue.ask(to, &store, None).await;
        assert!(
            matches!(answer, Body::StoreAns(_)),
            "a replacement does not grow: {answer:?}"
        );
    });
    assert!(
        status(s.peer.admin).is_some_and(|st| st.joined),
        "the peer keeps serving"
    );
}

fn assert_error(answer: &Body, code: ErrorCode, reason: &str) {
    let Body::Error(e) = answer else {
        panic!("expected Error {code:?} ({reason}), got {answer:?}")
    };
    assert_eq!(e.error_code, code, "{e:?}");
    let info = String::from_utf8_lossy(&e.error_info);
    assert!(info.contains(reason), "error_info {info:?} does not say {reason:?}");
}

#[test]
fn a_join_under_a_node_id_the_certificate_does_not_carry_is_refused() {
    let s = scene("wrongid");
    let stranger = random_node_id(16);
    runtime().block_on(async {
        let mut rogue = RawClient::connect(&s.rogue, s.peer.listen).await;
        let join = Body::JoinReq(JoinReq {
            joining_peer_id: stranger,
            overlay_specific_data: Vec::new(),
        });
        let peer_id = NodeId::from_hex(&status(s.peer.admin).unwrap().node_id).unwrap();
        let answer = rogue.ask(Destination::Node(peer_id), &join, None).await;
        assert_error(&answer, ErrorCode::FORBIDDEN, "join refused");
    });
    let st = status(s.peer.admin).expect("the peer keeps serving");
    let stranger = stranger.to_hex();
    assert!(
        !st.successors.contains(&stranger) && !st.predecessors.contains(&stranger),
        "the claimed Node-ID entered the ring: {st:?}"
    );
}

#[test]
fn forged_and_unsigned_stores_are_refused_and_nothing_is_stored() {
    let s = scene("forged");
    let certificate_of_rogue = format!("/certificate/{}", s.rogue.info.node_ids[0].to_hex());
    runtime().block_on(async {
        use overlay::Signer;
        let mut rogue = RawClient::connect(&s.rogue, s.peer.listen).await;
        // A value whose signature covers something else.
        let forged = rogue.security.sign(b"not the value");
        let (to, store) = rogue.certificate_store(Some(forged));
        let answer = rogue.ask(to, &store, None).await;
        assert_error(&answer, ErrorCode::FORBIDDEN, "bad value signature");
        // A value with no signature at all.
        let (to, store) = rogue.certificate_store(Some(Signature::anonymous()));
        let answer = rogue.ask(to, &store, None).await;
        assert_error(&answer, ErrorCode::FORBIDDEN, "stored values must be signed");
        // A properly signed value in an unsigned message.
        let (to, store) = rogue.certificate_store(None);
        let answer = rogue.ask(to, &store, Some(Signature::anonymous())).await;
        assert_error(&answer, ErrorCode::FORBIDDEN, "bad message signature");
        // A message signature that does not match the message.
        let (to, store) = rogue.certificate_store(None);
        let forged = rogue.security.sign(b"another message");
        let answer = rogue.ask(to, &store, Some(forged)).await;
        assert_error(&answer, ErrorCode::FORBIDDEN, "bad message signature");
        // A properly signed Store made under a newer configuration
        // document (§6.3.2.1).
        let (to, store) = rogue.certificate_store(None);
        rogue.configuration = rogue.configuration.wrapping_add(1);
        let answer = rogue.ask(to, &store, None).await;
        assert_error(&answer, ErrorCode::CONFIG_TOO_NEW, "configuration sequence differs");
    });
    let fetched: Option<node::peer::FetchedCertificate> = get(s.peer.admin, &certificate_of_rogue);
    assert!(fetched.is_none(), "a refused Store left data behind: {fetched:?}");
    // Only the peer's own certificate, by Node-ID and by user name (§8).
    let own: std::collections::BTreeMap<String, usize> = [
        ("CERTIFICATE_BY_NODE".to_string(), 1),
        ("CERTIFICATE_BY_USER".to_string(), 1),
    ]
    .into();
    let mut stored = Default::default();
    wait_for(
        Duration::from_secs(10),
        "only the peer's own certificates stored",
        || {
            stored = status(s.peer.admin).unwrap().stored;
            stored == own
        },
    );

    // The same Store, signed properly, is taken: the refusals above were
    // about the signatures, not about the client.
    runtime().block_on(async {
        let mut rogue = RawClient::connect(&s.rogue, s.peer.listen).await;
        let (to, store) = rogue.certificate_store(None);
        let answer = rogue.ask(to, &store, None).await;
        assert!(matches!(answer, Body::StoreAns(_)), "{answer:?}");
    });
    let fetched: Option<node::peer::FetchedCertificate> = get(s.peer.admin, &certificate_of_rogue);
    assert!(fetched.is_some(), "the properly signed Store was not kept");

    // /metrics saw the four refusals and three accepted Stores (the peer's
    // own certificate by Node-ID and by user name, and the rogue's), and
    // the two certificate lookups.
    let answered = |result: &str| {
        metric(
            s.peer.admin,
            &format!("p2psip_requests_answered_total{{method=\"store\",result=\"{result}\"}}"),
        )
    };
    assert_eq!(answered("Error_Forbidden"), 4.0);
    assert_eq!(answered("ok"), 3.0);
    let lookups = metric(s.peer.admin, "p2psip_request_duration_seconds_count{method=\"fetch\"}");
    assert_eq!(lookups, 2.0);
}

/// Issue 32: a node directory serves one process. A second `p2psip peer`
/// on a directory in use (a copy started by mistake) exits with status 2
/// naming the pid that holds it, before it opens a link; the first peer
/// keeps serving and never has to rejoin.
#[test]
fn a_second_peer_on_a_node_directory_in_use_is_refused() {
    let mut overlay = Overlay::create("refuse-lock", OVERLAY);
    let dir = overlay.enroll("n0");
    let first = overlay.start_peer(&dir, None);
    wait_for(Duration::from_secs(15), "the first peer to start the overlay", || {
        status(first.admin).is_some_and(|s| s.joined)
    });
    let pid = overlay.procs.0[first.child].id();
    let second = std::process::Command::new(BIN)
        .args(["peer", "--dir", dir.to_str().unwrap()])
        .args(["--listen", &loopback(free_port()).to_string()])
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(2));
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("{} is in use by pid {pid}", dir.display())),
        "{err}"
    );
    assert!(
        status(first.admin).is_some_and(|s| s.joined),
        "the first peer still serves"
    );
    let log = std::fs::read_to_string(&first.log).unwrap();
    assert!(!log.contains("joining again"), "{log}");
    // Once the holder is gone, the directory can be used again.
    overlay.procs.0[first.child].kill().unwrap();
    overlay.procs.0[first.child].wait().unwrap();
    let again = overlay.start_peer(&dir, None);
    wait_for(Duration::from_secs(15), "a new peer on the freed directory", || {
        status(again.admin).is_some_and(|s| s.joined)
    });
}

/// Copies a node directory as someone setting up a second machine by
/// copying the first would: every regular file (not the lock's holder,
/// which stays with the running process, nor its control socket).
fn copy_node_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            copy_node_dir(&entry.path(), &target);
        } else if kind.is_file() {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Issue 32: the same Node-ID on two machines. A copy of a running
/// peer's node directory is started elsewhere and joins through another
/// peer. That peer asks both links who they are (a Ping over each: one
/// process answers both with the same response_id) and refuses the copy:
/// both say so in one line (the copy names what to do), the original never
/// loses the overlay, the ring stays whole without the copy, and the copy
/// retries with backoff rather than storming.
#[test]
fn a_copied_node_directory_is_refused_by_the_overlay_without_a_storm() {
    let mut overlay = Overlay::create("refuse-copy", OVERLAY);
    let dirs: Vec<PathBuf> = (0..3).map(|i| overlay.enroll(&format!("n{i}"))).collect();
    let first = overlay.start_peer(&dirs[0], None);
    wait_for(Duration::from_secs(15), "the first peer", || {
        status(first.admin).is_some_and(|s| s.joined)
    });
    let others: Vec<Peer> = dirs[1..]
        .iter()
        .map(|d| overlay.start_peer(d, Some(first.listen)))
        .collect();
    let ring = [&first, &others[0], &others[1]];
    wait_consistent(&ring, Duration::from_secs(30), "three peers");
    // Links must be older than a simultaneous dial for the check to run.
    std::thread::sleep(Duration::from_secs(6));

    let copy = overlay.dir.join("n0-copy");
    copy_node_dir(&dirs[0], &copy);
    let intruder = overlay.start_peer(&copy, Some(others[0].listen));
    let refused_by = |p: &Peer| {
        std::fs::read_to_string(&p.log)
            .unwrap()
            .contains("refused a second process with Node-ID")
    };
    wait_for(Duration::from_secs(20), "a peer to refuse the copy", || {
        ring.iter().any(|p| refused_by(p))
    });
    wait_for(Duration::from_secs(10), "the copy to say why", || {
        std::fs::read_to_string(&intruder.log)
            .unwrap()
            .contains("refused this node: Node-ID")
    });
    let said = std::fs::read_to_string(&intruder.log).unwrap();
    assert!(said.contains("p2psip enroll"), "it says what to do:\n{said}");
    let counted: f64 = ring
        .iter()
        .map(|p| metric(p.admin, "p2psip_duplicate_node_ids_total"))
        .sum();
    assert!(counted >= 1.0);

    std::thread::sleep(Duration::from_secs(10));
    wait_consistent(&ring, Duration::from_secs(10), "the three original peers");
    assert!(
        !status(intruder.admin).is_some_and(|s| s.joined),
        "the copy is not in the overlay"
    );
    let original = std::fs::read_to_string(&first.log).unwrap();
    assert!(
        !original.contains("joining again") && !original.contains("lost the overlay"),
        "the original never loses the overlay:\n{original}"
    );
    // Backing off is in the join attempts (1, 2, 4, 8 s apart): at most 6
    // in about 20 s, each refused by a request or three, not a storm.
    let said = std::fs::read_to_string(&intruder.log).unwrap();
    let attempts = said.matches("joining again").count();
    let refusals = said.matches("refused this node").count();
    assert!(
        attempts <= 6 && refusals <= 3 * attempts.max(1),
        "the copy backs off ({attempts} join attempts, {refusals} refusals in about 20 s)"
    );
}

/// Issue 35 §3: the overlay port is taken over UDP as well (the STUN
/// server). With that UDP port held by another program, the peer exits
/// with one line that names the port and what to do, instead of running
/// without its STUN server.
#[test]
fn a_peer_whose_overlay_port_is_taken_over_udp_says_so_in_one_line() {
    let overlay = Overlay::create("refuse-udp", OVERLAY);
    let dir = overlay.enroll("n0");
    let listen = loopback(free_port());
    let _holder = std::net::UdpSocket::bind(listen).unwrap();
    let out = std::process::Command::new(BIN)
        .args(["peer", "--dir", dir.to_str().unwrap()])
        .args(["--listen", &listen.to_string()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!("cannot take UDP {listen}")) && err.contains("choose another --listen port"),
        "{err}"
    );
}
