//! The enrollment server and client over real HTTPS on loopback
//! (RFC 6940 §11.2-§11.3).

use node::enrollment::{self, CaPin, Client, EnrollError};
use node::node_dir::NodeDir;
use node::overlay_dir::{InitOptions, OverlayDir};
use node::pki;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

const OVERLAY: &str = "enroll.p2psip.example";

struct Server {
    dir: PathBuf,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(tag: &str) -> Server {
        let dir = scratch(tag).join("overlay");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        OverlayDir::init(
            &dir,
            &InitOptions {
                overlay: OVERLAY.into(),
                users: vec![("alice".into(), "wonderland".into()), ("bob".into(), "builder".into())],
                enrollment_url: format!("https://127.0.0.1:{}/enroll", addr.port()),
                bootstrap: vec![],
                multicast_bootstrap: None,
                server_hosts: vec!["127.0.0.1".into(), "localhost".into()],
                ice: false,
                turn_density: 1,
            },
        )
        .unwrap();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let serve_dir = dir.clone();
        let task = tokio::spawn(async move {
            enrollment::serve(&serve_dir, listener, Default::default(), async {
                let _ = stopped.await;
            })
            .await
            .unwrap();
        });
        Server {
            dir,
            base: format!("https://127.0.0.1:{}", addr.port()),
            stop: Some(stop),
            task,
        }
    }

    fn ca(&self) -> CaPin {
        CaPin::Certificate(pki::pem_to_der(&std::fs::read_to_string(self.dir.join("ca.crt")).unwrap()).unwrap())
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).unwrap();
        self.task.await.unwrap();
    }
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("p2psip-enroll-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn node_dir(server: &Server, name: &str) -> PathBuf {
    server.dir.parent().unwrap().join(name)
}

#[tokio::test]
async fn a_node_enrolls_and_its_directory_loads_as_a_peer_identity() {
    let server = Server::start("ok").await;
    let dir = node_dir(&server, "n1");
    let done = enrollment::enroll(&server.base, server.ca(), "alice", "wonderland", &dir)
        .await
        .unwrap();
    assert_eq!(done.overlay, OVERLAY);
    assert_eq!(done.user, format!("alice@{OVERLAY}"));
    assert_eq!(done.node_ids.len(), 1);
    let loaded = NodeDir::load(&dir).unwrap();
    assert_eq!(loaded.info.node_ids, done.node_ids);
    assert_eq!(loaded.config.instance_name, OVERLAY);
    loaded.security().unwrap();
    server.stop().await;
}

#[tokio::test]
async fn the_same_key_keeps_its_node_id_and_a_new_key_gets_a_new_one() {
    let server = Server::start("same").await;
    let (d1, d2) = (node_dir(&server, "a1"), node_dir(&server, "a2"));
    let first = enrollment::enroll(&server.base, server.ca(), "alice", "wonderland", &d1)
        .await
        .unwrap();
    let again = enrollment::enroll(&server.base, server.ca(), "alice", "wonderland", &d1)
        .await
        .unwrap();
    assert_eq!(
        first.node_ids, again.node_ids,
        "§11.3: a returning user keeps its Node-IDs"
    );
    let other = enrollment::enroll(&server.base, server.ca(), "alice", "wonderland", &d2)
        .await
        .unwrap();
    assert_ne!(
        first.node_ids, other.node_ids,
        "a second device of the user is a second node"
    );
    server.stop().await;
}

#[tokio::test]
async fn the_ca_can_be_pinned_by_fingerprint_and_a_wrong_pin_is_refused() {
    let server = Server::start("pin").await;
    let CaPin::Certificate(ca) = server.ca() else {
        unreachable!()
    };
    let pin = CaPin::fingerprint(&enrollment::fingerprint(&ca)).unwrap();
    enrollment::enroll(&server.base, pin, "bob", "builder", &node_dir(&server, "b"))
        .await
        .unwrap();

    let foreign = pki::Authority::create("other", std::time::SystemTime::now()).unwrap();
    let err = enrollment::enroll(
        &server.base,
        CaPin::Certificate(foreign.cert_der.clone()),
        "bob",
        "builder",
        &node_dir(&server, "b2"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::UntrustedServer { .. }), "{err}");
    let err = enrollment::enroll(
        &server.base,
        CaPin::Fingerprint([7; 32]),
        "bob",
        "builder",
        &node_dir(&server, "b3"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::UntrustedServer { .. }), "{err}");
    assert!(!node_dir(&server, "b2").join("node.crt").exists());
    assert!(matches!(CaPin::fingerprint("abc"), Err(EnrollError::BadFingerprint(_))));
    server.stop().await;
}

#[tokio::test]
async fn bad_credentials_get_failed_authentication() {
    let server = Server::start("auth").await;
    for (user, password) in [("alice", "wrong"), ("nobody", "wonderland"), ("alice", "")] {
        let err = enrollment::enroll(&server.base, server.ca(), user, password, &node_dir(&server, "x"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, EnrollError::Refused { token, .. } if token == "failed_authentication"),
            "{user}: {err}"
        );
    }
    server.stop().await;
}

async fn post(server: &Server, body: Vec<u8>, content_type: &str) -> (u16, String) {
    let client = Client::new(server.ca());
    let (status, _, body) = client
        .request(
            &format!("{}/enroll", server.base),
            hyper::Method::POST,
            Some(content_type.to_string()),
            body,
        )
        .await
        .unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn malformed_csrs_oversized_bodies_and_broken_forms_get_clear_http_errors() {
    let server = Server::start("bad").await;
    let form = |csr: &[u8], extra: &[(&str, Option<&str>, &[u8])]| {
        let mut fields: Vec<(&str, Option<&str>, &[u8])> =
            vec![("username", None, b"alice"), ("password", None, b"wonderland")];
        fields.push(("csr", Some("application/pkcs10"), csr));
        fields.extend_from_slice(extra);
        let fields: Vec<(&str, Option<&str>, &[u8])> = fields;
        enrollment::multipart(&fields)
    };
    let (body, ct) = form(b"not a certificate request", &[]);
    assert_eq!(post(&server, body, &ct).await, (403, "bad_CSR".into()));

    let key = pki::generate_key().unwrap();
    let csr = pki::make_csr(&key, "alice").unwrap();
    let (body, ct) = form(&csr, &[("nodeids", None, b"1000")]);
    assert_eq!(post(&server, body, &ct).await, (403, "Node-IDs_not_available".into()));
    let (body, ct) = form(&csr, &[("nodeids", None, b"3")]);
    let (status, _) = post(&server, body, &ct).await;
    assert_eq!(status, 200, "three Node-IDs are fine");

    let huge = vec![b'x'; enrollment::MAX_REQUEST_BODY + 1];
    let (body, ct) = form(&huge, &[]);
    assert_eq!(post(&server, body, &ct).await.0, 413);

    let (status, _) = post(&server, b"username=alice".to_vec(), "application/x-www-form-urlencoded").await;
    assert_eq!(status, 400);
    let (body, ct) = enrollment::multipart(&[("username", None, b"alice")]);
    let (status, why) = post(&server, body, &ct).await;
    assert_eq!(status, 400);
    assert!(why.contains("csr"), "{why}");
    server.stop().await;
}

#[tokio::test]
async fn a_configuration_not_signed_by_its_signer_is_refused() {
    let server = Server::start("forged").await;
    // Replace the served document with one whose initial-ttl was edited.
    let path = server.dir.join("reload-config.xml");
    let doc = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, doc.replacen("<initial-ttl>100", "<initial-ttl>7", 1)).unwrap();
    server.stop().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("https://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let dir = path.parent().unwrap().to_path_buf();
    let pin = CaPin::Certificate(pki::pem_to_der(&std::fs::read_to_string(dir.join("ca.crt")).unwrap()).unwrap());
    let task =
        tokio::spawn(
            async move { enrollment::serve(&dir, listener, Default::default(), std::future::pending()).await },
        );
    let err = enrollment::enroll(
        &base,
        pin,
        "alice",
        "wonderland",
        Path::new("/nonexistent/never-created"),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, EnrollError::Config(_)), "{err}");
    task.abort();
}
