//! Any bytes as the body of an enrollment request (RFC 6940 §11.3: a
//! multipart form with username, password, nodeids and a PKCS#10 CSR),
//! which anyone who reaches the enrollment server can send: the form is
//! read as the server reads it, and its CSR goes through the key check
//! and the certificate authority. No panic; a certificate issued carries
//! exactly the Node-IDs asked for.
#![no_main]

use axum::extract::{FromRequest, Multipart};
use libfuzzer_sys::fuzz_target;
use node::enrollment::EnrollmentForm;
use node::pki::{cert_info, csr_key_id, Authority};
use reload_wire::NodeId;
use std::sync::LazyLock;
use std::time::SystemTime;

const BOUNDARY: &str = "fuzzboundary";

static AUTHORITY: LazyLock<Authority> =
    LazyLock::new(|| Authority::create("fuzz.test", SystemTime::now()).expect("a CA"));

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
});

fuzz_target!(|data: &[u8]| {
    let request = axum::http::Request::builder()
        .method("POST")
        .header("content-type", format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(axum::body::Body::from(data.to_vec()))
        .expect("a request");
    let form = RUNTIME.block_on(async {
        let multipart = Multipart::from_request(request, &()).await.ok()?;
        EnrollmentForm::read(multipart).await.ok()
    });
    // The CSR alone too, so the fuzzer need not build a form to reach it.
    let csr = match &form {
        Some(f) => f.csr.clone(),
        None => data.to_vec(),
    };
    if csr_key_id(&csr).is_err() {
        return;
    }
    let ids = [NodeId::from_u128(1), NodeId::from_u128(2)];
    let user = form.as_ref().map_or("fuzz", |f| f.user.as_str());
    let Ok(cert) = AUTHORITY.issue_node(&csr, &format!("{user}@fuzz.test"), &ids, "fuzz.test", SystemTime::now())
    else {
        return;
    };
    let info = cert_info(&cert, "fuzz.test", 16).expect("an issued certificate reads");
    assert_eq!(info.node_ids, ids.to_vec());
});
