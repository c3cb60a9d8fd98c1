//! Configuration updates on real peers (RFC 6940 §6.5.4, §6.3.2.1,
//! issue 33 §5): the operator publishes a new document with a new Kind
//! through one peer's admin API; every peer adopts it within seconds,
//! keeps it for its next start, and stores values of the new Kind; a node
//! still on the old document is refused with Error_Config_Too_Old and sent
//! the new one; a node enrolling afterwards gets the new one.

mod common;

use common::raw_client::RawClient;
use common::*;
use node::config_doc::SignedConfiguration;
use node::node_dir::NodeDir;
use reload_wire::storage::{DataValue, StoredData, StoredDataValue};
use reload_wire::{Body, ConfigUpdateReq, Destination, ErrorCode, PingReq, StoreKindData, StoreReq};
use std::time::{Duration, Instant, SystemTime};

const OVERLAY: &str = "config-update.p2psip.test";
/// A Kind only the new document defines: one value per Node-ID.
const NEW_KIND: u32 = 0x4000_0042;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A Store of one value of the new Kind under the client's own Node-ID
/// (NODE-MATCH, §7.3.2).
fn store_new_kind(client: &RawClient, value: &[u8], storage_time: u64) -> (Destination, Body) {
    use overlay::Signer;
    let resource = overlay::Topology::resource_id(&client.hasher, client.me.as_bytes());
    let value = StoredDataValue::SingleValue(DataValue {
        exists: true,
        value: value.to_vec(),
    });
    let identity = client.security.identity();
    let input = StoredData::signature_input(&resource, NEW_KIND, storage_time, &value, &identity).unwrap();
    let body = Body::StoreReq(StoreReq {
        resource: resource.clone(),
        replica_number: 0,
        kind_data: vec![StoreKindData {
            kind: NEW_KIND,
            generation_counter: 0,
            values: vec![StoredData {
                storage_time,
                lifetime: 600,
                value,
                signature: client.security.sign(&input),
            }],
        }],
    });
    (Destination::Resource(resource), body)
}

/// Peers on `dirs`, each joining through the first.
fn start_ring(overlay: &mut Overlay, dirs: &[std::path::PathBuf]) -> Vec<Peer> {
    let first = overlay.start_peer(&dirs[0], None);
    let mut peers = vec![first];
    for d in &dirs[1..] {
        let p = overlay.start_peer(d, Some(peers[0].listen));
        peers.push(p);
    }
    peers
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_published_configuration_with_a_new_kind_reaches_all_five_peers_and_is_used() {
    let mut overlay = Overlay::create("cfgupdate", OVERLAY);
    let dirs: Vec<_> = (0..5).map(|i| overlay.enroll(&format!("peer{i}"))).collect();
    let writer = NodeDir::load(&overlay.enroll("writer")).unwrap();
    let peers = start_ring(&mut overlay, &dirs);
    let all: Vec<&Peer> = peers.iter().collect();
    wait_consistent(&all, Duration::from_secs(30), "five peers");
    assert!(all.iter().all(|p| status(p.admin).unwrap().configuration_sequence == 1));

    // Before: the Kind is unknown to the overlay.
    let rt = runtime();
    let refused = rt.block_on(async {
        let mut client = RawClient::connect(&writer, peers[1].listen).await;
        let (to, store) = store_new_kind(&client, b"too early", now_ms());
        client.ask(to, &store, None).await
    });
    assert!(matches!(refused, Body::Error(_)), "{refused:?}");

    // The operator edits the document: a new Kind, as text.
    let overlay_dir = overlay.dir.join("overlay");
    let kind = format!(
        "<kind-block><kind id=\"{NEW_KIND}\"><data-model>SINGLE</data-model><access-control>NODE-MATCH</access-control><max-count>1</max-count><max-size>256</max-size></kind></kind-block></required-kinds>"
    );
    let published = overlay.publish_config(peers[2].admin, |shown| shown.replacen("</required-kinds>", &kind, 1));
    assert!(published.contains("runs sequence 2 now"), "{published}");
    let start = Instant::now();
    wait_for(Duration::from_secs(10), "all five peers on sequence 2", || {
        all.iter()
            .all(|p| status(p.admin).is_some_and(|s| s.configuration_sequence == 2))
    });
    eprintln!("all five peers adopted sequence 2 in {:?}", start.elapsed());
    for (i, d) in dirs.iter().enumerate() {
        let kept = NodeDir::load(d).unwrap().config;
        assert_eq!(kept.sequence, 2, "peer{i} keeps the document for its next start");
        assert!(kept.kinds.iter().any(|k| k.id == NEW_KIND));
    }
    let document = std::fs::read_to_string(overlay_dir.join("reload-config.xml")).unwrap();
    let new = SignedConfiguration::parse(&document, None).unwrap().configuration;
    let new_ctx = new.overlay_config().decode_context().unwrap();

    // After: the new Kind is stored, through each of the five peers.
    rt.block_on(async {
        let t0 = now_ms();
        for (i, p) in peers.iter().enumerate() {
            let mut client = RawClient::connect(&writer, p.listen).await;
            client.configuration = 2;
            client.ctx = new_ctx.clone();
            let (to, store) = store_new_kind(&client, format!("via peer{i}").as_bytes(), t0 + i as u64);
            let answer = client.ask(to, &store, None).await;
            assert!(matches!(answer, Body::StoreAns(_)), "through peer{i}: {answer:?}");
        }
    });
    let kind_name = format!("kind-{NEW_KIND}");
    wait_for(Duration::from_secs(10), "the value on its three holders", || {
        let holders = all
            .iter()
            .filter(|p| status(p.admin).is_some_and(|s| s.stored.get(&kind_name) == Some(&1)))
            .count();
        holders == 3
    });

    // A node still on sequence 1 is refused and told (§6.3.2.1).
    rt.block_on(async {
        let mut client = RawClient::connect(&writer, peers[4].listen).await;
        let to = Destination::Node(reload_wire::NodeId::from_hex(&status(peers[4].admin).unwrap().node_id).unwrap());
        let answer = client.ask(to, &Body::PingReq(PingReq { padding: vec![] }), None).await;
        let Body::Error(e) = &answer else {
            panic!("a request under sequence 1 was answered: {answer:?}")
        };
        assert_eq!(e.error_code, ErrorCode::CONFIG_TOO_OLD);
        client.ctx = new_ctx.clone();
        let told = client.next_request(Duration::from_secs(5)).await;
        let Some(Body::ConfigUpdateReq(ConfigUpdateReq::Config(sent))) = told else {
            panic!("the peer did not send its document: {told:?}")
        };
        assert_eq!(sent, document.as_bytes(), "the new document, as published");
    });

    // A node enrolling now gets the new document from the enrollment server.
    let late = NodeDir::load(&overlay.enroll("late")).unwrap();
    assert_eq!(late.config.sequence, 2);

    // Publishing the same document again changes nothing.
    let again = run_ok(&[
        "config",
        "publish",
        "--dir",
        overlay_dir.to_str().unwrap(),
        overlay.dir.join("edited-config.xml").to_str().unwrap(),
    ]);
    assert!(
        again.contains("sequence 3"),
        "a new publish is the next sequence: {again}"
    );
    assert!(all.iter().all(|p| status(p.admin).unwrap().configuration_sequence == 2));
    let refused_metric = metric(peers[2].admin, "p2psip_configuration_updates_refused_total");
    assert_eq!(refused_metric, 0.0, "no peer refused a genuine update");
    assert_eq!(metric(peers[0].admin, "p2psip_configuration_sequence"), 2.0);
}

/// §6.5.4's recovery: a document larger than a ConfigUpdate may carry
/// (here the new document lowers max-message-size below its own size)
/// cannot be handed on, so peers that are answered Error_Config_Too_Old
/// fetch it from the configuration server instead.
#[test]
fn peers_fetch_a_document_too_large_to_hand_on_from_the_configuration_server() {
    let mut overlay = Overlay::create("cfgfetch", OVERLAY);
    let dirs: Vec<_> = (0..3).map(|i| overlay.enroll(&format!("peer{i}"))).collect();
    let peers = start_ring(&mut overlay, &dirs);
    let all: Vec<&Peer> = peers.iter().collect();
    wait_consistent(&all, Duration::from_secs(30), "three peers");
    let overlay_dir = overlay.dir.join("overlay");
    let shown = run_ok(&["config", "show", "--dir", overlay_dir.to_str().unwrap()]);
    let edited = shown.replacen(
        "<max-message-size>32768</max-message-size>",
        "<max-message-size>5000</max-message-size>",
        1,
    );
    assert_ne!(edited, shown);
    let edited_path = overlay.dir.join("edited-config.xml");
    std::fs::write(&edited_path, edited).unwrap();
    let admin = peers[0].admin.to_string();
    let out = std::process::Command::new(BIN)
        .args(["config", "publish", "--dir", overlay_dir.to_str().unwrap()])
        .arg(&edited_path)
        .args(["--peer", &admin])
        .output()
        .unwrap();
    assert!(out.status.success());
    let warning = String::from_utf8_lossy(&out.stderr);
    assert!(
        warning.contains("too large for a ConfigUpdate"),
        "publish warns: {warning}"
    );
    let start = Instant::now();
    wait_for(Duration::from_secs(20), "all three peers on sequence 2", || {
        all.iter()
            .all(|p| status(p.admin).is_some_and(|s| s.configuration_sequence == 2))
    });
    eprintln!("the other peers fetched sequence 2 in {:?}", start.elapsed());
    for p in &peers[1..] {
        let log = std::fs::read_to_string(&p.log).unwrap();
        assert!(
            log.contains("fetching it from the configuration server"),
            "{} fetched it: {log}",
            p.listen
        );
    }
    wait_consistent(&all, Duration::from_secs(30), "the ring after the change");
}

/// Whether the peer at `to` takes a link from the node of `node`: the
/// TLS handshake completes and the peer keeps the link open (for 2 s
/// here) rather than closing it.
fn link_taken(rt: &tokio::runtime::Runtime, node: &NodeDir, to: std::net::SocketAddr) -> bool {
    use tokio::io::AsyncReadExt;
    rt.block_on(async {
        let config = common::raw_client::client_config(node.config.trust_store(), Some((node.cert_der.clone(), node)));
        let tcp = tokio::net::TcpStream::connect(to).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
        let Ok(mut tls) = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
            .connect(name, tcp)
            .await
        else {
            return false;
        };
        // Whatever the peer sends (it may speak first), the link stays.
        let mut buf = [0u8; 4096];
        let open = async { while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {} };
        tokio::time::timeout(Duration::from_secs(2), open).await.is_err()
    })
}

/// RFC 6940 §11.1 on running peers: the operator publishes a document
/// listing one peer and one other enrolled node as bad-nodes. The other
/// peers adopt it and refuse both at once, without a restart (their
/// links, signatures and SIP share one trust store): they close their
/// links to the peer, a new link from the other node is refused, and the
/// other three make a ring of their own. The revoked peer cannot run the
/// document and leaves.
#[test]
fn a_node_published_as_a_bad_node_is_cut_off_at_once_and_leaves() {
    let mut overlay = Overlay::create("cfgbadnode", OVERLAY);
    let dirs: Vec<_> = (0..4).map(|i| overlay.enroll(&format!("peer{i}"))).collect();
    let peers = start_ring(&mut overlay, &dirs);
    let all: Vec<&Peer> = peers.iter().collect();
    wait_consistent(&all, Duration::from_secs(30), "four peers");
    let bad = NodeDir::load(&dirs[3]).unwrap().info.node_ids[0].to_hex();
    let rogue = NodeDir::load(&overlay.enroll("rogue")).unwrap();
    let rt = runtime();
    assert!(link_taken(&rt, &rogue, peers[0].listen), "a member's link is taken");

    let rogue_id = rogue.info.node_ids[0].to_hex();
    let published = overlay.publish_config(peers[0].admin, |shown| {
        let at = shown.find("<max-message-size>").expect("a max-message-size element");
        let listed = format!("<bad-node>{bad}</bad-node>\n    <bad-node>{rogue_id}</bad-node>\n    ");
        format!("{}{listed}{}", &shown[..at], &shown[at..])
    });
    assert!(published.contains("runs sequence 2 now"), "{published}");
    let others = &all[..3];
    let start = Instant::now();
    wait_for(
        Duration::from_secs(15),
        "the others on sequence 2, unlinked from the bad node",
        || {
            others.iter().all(|p| {
                status(p.admin).is_some_and(|s| {
                    s.configuration_sequence == 2
                        && ![&s.links, &s.successors, &s.predecessors, &s.fingers]
                            .iter()
                            .any(|l| l.contains(&bad))
                })
            })
        },
    );
    eprintln!("the bad node was cut off {:?} after the publish", start.elapsed());
    assert!(
        !link_taken(&rt, &rogue, peers[0].listen),
        "a link from a bad node is refused without a restart"
    );
    // It exits at once: every peer cuts it off, so it has nothing to hand
    // over (a hand-over would wait out its pushes' 15 s timeouts).
    let exited = wait_for(Duration::from_secs(10), "the revoked peer to exit", || {
        status(peers[3].admin).is_none()
    });
    eprintln!("the revoked peer exited {exited:?} after the others cut it off");
    let log = std::fs::read_to_string(&peers[3].log).unwrap();
    assert!(
        log.contains("as a bad-node"),
        "the revoked peer says why it left: {log}"
    );
    wait_consistent(others, Duration::from_secs(30), "the three others");
}
