//! The configuration and enrollment server (RFC 6940 §11.2, §11.3) and
//! its client.
//!
//! Server: HTTPS (rustls). `GET /.well-known/reload-config` returns the
//! signed document; `POST /enroll` takes a multipart/form-data body with
//! `username`, `password`, optional `nodeids` and `csr` (PKCS#10 DER) and
//! returns the certificate as `application/pkix-cert`. Node-IDs are drawn
//! at random by the server; a key that enrolls again gets its Node-IDs
//! back (§11.3 SHOULD), a new key of the same user gets new ones
//! (decision 0005). Errors are 403 with the §11.3 token as text/plain.
//!
//! Client: [`enroll`] fetches the document over HTTPS pinned to the
//! overlay's CA (its certificate, or its SHA-256 fingerprint), verifies
//! the document's signature, enrolls, and checks the certificate.

use crate::enrollment_limits::{may_add_key, EnrollmentLimits, Gate, Throttled};
use crate::node_dir::verify_config;
use crate::overlay_dir::{self, parse_node_ids, write, DirError, Issued, OverlayDir};
use crate::pki::{self, PkiError};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use reload_wire::{hex, unhex};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use thiserror::Error;
use tokio::net::{TcpListener, TcpStream};

/// Largest enrollment request body; a CSR is well under 4 KB.
pub const MAX_REQUEST_BODY: usize = 64 * 1024;
/// Most Node-IDs one certificate may carry.
pub const MAX_NODE_IDS: usize = 16;
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Connections served at once, and from one address; the longest one lasts
/// (an enrollment is a request or two).
const MAX_CONNECTIONS: usize = 64;
const MAX_CONNECTIONS_PER_SOURCE: usize = 8;
const CONNECTION_LIFETIME: Duration = Duration::from_secs(60);
/// Longest user name taken: the limits remember names that failed.
const MAX_USER_NAME: usize = 256;
/// Password checks (100,000 PBKDF2 rounds each) run at once, off the
/// async workers.
const PASSWORD_CHECKS: usize = 2;

pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

// ----- server -----------------------------------------------------------

struct ServerState {
    dir: OverlayDir,
    overlay: String,
    node_id_length: usize,
    document: Mutex<ServedDocument>,
    authority: pki::Authority,
    /// Serialises reading and writing enrolled.json.
    issuing: Mutex<()>,
    limits: EnrollmentLimits,
    gate: Mutex<Gate>,
}

/// The address a request came from (one per connection).
#[derive(Clone, Copy)]
struct Remote(std::net::SocketAddr);

/// Throttled and refused enrollments logged per minute at most: anyone who
/// can reach the server can cause them.
static REFUSALS: std::sync::LazyLock<crate::log_budget::LogLimiter> =
    std::sync::LazyLock::new(|| crate::log_budget::LogLimiter::new(20, 60_000, "enrollment refusals"));

/// Serves the overlay in `dir` on `listener` until `shutdown` completes.
pub async fn serve(
    dir: &Path,
    listener: TcpListener,
    limits: EnrollmentLimits,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DirError> {
    let dir = OverlayDir::open(dir)?;
    let document = dir.config_document()?;
    let config = crate::config_doc::SignedConfiguration::parse(&document, None)
        .map_err(|e| DirError::Corrupt {
            path: dir.file("reload-config.xml"),
            problem: e.to_string(),
        })?
        .configuration;
    let server_config = tls_server_config(&dir)?;
    let state = Arc::new(ServerState {
        overlay: config.instance_name.clone(),
        node_id_length: config.node_id_length,
        authority: dir.authority()?,
        document: Mutex::new(ServedDocument {
            modified: std::fs::metadata(dir.file("reload-config.xml"))
                .and_then(|m| m.modified())
                .ok(),
            text: document,
        }),
        dir,
        issuing: Mutex::new(()),
        gate: Mutex::new(Gate::new(&limits)),
        limits,
    });
    let app = Router::new()
        .route("/.well-known/reload-config", get(get_config))
        .route("/enroll", post(post_enroll))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
        .with_state(state);
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let caps = crate::source_caps::ConnectionCaps::new(MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE);
    tokio::pin!(shutdown);
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = crate::source_caps::accept(&listener) => accepted,
            _ = &mut shutdown => return Ok(()),
        };
        // Bounded like every listener: past the caps, closed at once.
        let Ok(admitted) = caps.admit(remote.ip()) else {
            continue;
        };
        let acceptor = acceptor.clone();
        let app = app.clone().layer(axum::Extension(Remote(remote)));
        tokio::spawn(async move {
            let _admitted = admitted;
            let tls = match tokio::time::timeout(CLIENT_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => return tracing::info!("TLS handshake with {remote} failed: {e}"),
                Err(_) => return tracing::info!("TLS handshake with {remote} timed out"),
            };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(CLIENT_TIMEOUT)
                .serve_connection(TokioIo::new(tls), service);
            match tokio::time::timeout(CONNECTION_LIFETIME, connection).await {
                Ok(Err(e)) => tracing::debug!("HTTP connection from {remote}: {e}"),
                Err(_) => tracing::debug!("HTTP connection from {remote} closed after {CONNECTION_LIFETIME:?}"),
                Ok(Ok(())) => {}
            }
        });
    }
}

fn tls_server_config(dir: &OverlayDir) -> Result<rustls::ServerConfig, DirError> {
    use rustls::pki_types::pem::PemObject;
    let chain_path = dir.file("server.crt");
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(overlay_dir::read(&chain_path)?.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| DirError::Corrupt {
                path: chain_path.clone(),
                problem: e.to_string(),
            })?;
    let key = pki::key_from_pem(&overlay_dir::read(&dir.file("server.key"))?)?;
    rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, pki::rustls_key(&key)))
        .map_err(|e| DirError::Corrupt {
            path: chain_path,
            problem: e.to_string(),
        })
}

/// The configuration document served, as read from `reload-config.xml`.
struct ServedDocument {
    modified: Option<std::time::SystemTime>,
    text: String,
}

/// §11.2: the document the overlay directory holds now. `p2psip config
/// publish` replaces the file; the server notices by its modification time
/// and serves the new one from the next request.
async fn get_config(State(state): State<Arc<ServerState>>) -> Response {
    let path = state.dir.file("reload-config.xml");
    let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
    let text = {
        let mut served = state.document.lock().unwrap_or_else(|p| p.into_inner());
        if modified.is_some() && modified != served.modified {
            match std::fs::read_to_string(&path) {
                Ok(text) => {
                    tracing::info!("serving the configuration document {} as changed", path.display());
                    *served = ServedDocument { modified, text };
                }
                Err(e) => tracing::warn!("{}: {e}; serving the document read before", path.display()),
            }
        }
        served.text.clone()
    };
    ([(header::CONTENT_TYPE, crate::config_doc::CONTENT_TYPE)], text).into_response()
}

/// §11.3 error: 403 with one of the defined tokens.
fn refuse(token: &'static str) -> Response {
    (StatusCode::FORBIDDEN, [(header::CONTENT_TYPE, "text/plain")], token).into_response()
}

fn too_many(throttled: &Throttled) -> Response {
    let why = match throttled {
        Throttled::Address { .. } => "too many enrollment requests from this address",
        Throttled::Guessing { .. } => "too many failed authentications from this address",
        Throttled::Account { .. } => "too many failed authentications for this account",
    };
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::RETRY_AFTER, throttled.retry_after_s().to_string()),
            (header::CONTENT_TYPE, "text/plain".to_string()),
        ],
        format!("{why}; try again in {} s", throttled.retry_after_s()),
    )
        .into_response()
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// The fields of an enrollment request (RFC 6940 §11.3), as read from
/// its multipart form, before anything is checked against the accounts.
#[derive(Debug)]
pub struct EnrollmentForm {
    pub user: String,
    pub password: String,
    /// `nodeids`: absent (one), or what it said if it was a number.
    pub count: Option<Option<usize>>,
    /// The PKCS#10 request, DER.
    pub csr: Vec<u8>,
}

impl EnrollmentForm {
    /// Reads the form; unknown fields are ignored. The status and text of
    /// a 4xx answer if it is not one.
    pub async fn read(mut form: Multipart) -> Result<EnrollmentForm, (StatusCode, String)> {
        let (mut user, mut password, mut count, mut csr) = (None, None, None, None);
        loop {
            let field = match form.next_field().await {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => return Err((e.status(), e.body_text())),
            };
            let name = field.name().unwrap_or_default().to_string();
            let data = match field.bytes().await {
                Ok(d) => d,
                Err(e) => return Err((e.status(), e.body_text())),
            };
            let text = || String::from_utf8(data.to_vec()).ok();
            match name.as_str() {
                "username" => user = text(),
                "password" => password = text(),
                "nodeids" => count = Some(text().and_then(|t| t.trim().parse::<usize>().ok())),
                "csr" => csr = Some(data.to_vec()),
                _ => {}
            }
        }
        let (Some(user), Some(password), Some(csr)) = (user, password, csr) else {
            return Err((
                StatusCode::BAD_REQUEST,
                "the form needs username, password and csr fields (RFC 6940 §11.3)".into(),
            ));
        };
        if user.len() > MAX_USER_NAME {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("the user name is longer than {MAX_USER_NAME} bytes"),
            ));
        }
        Ok(EnrollmentForm {
            user,
            password,
            count,
            csr,
        })
    }
}

async fn post_enroll(
    State(state): State<Arc<ServerState>>,
    axum::Extension(Remote(remote)): axum::Extension<Remote>,
    headers: HeaderMap,
    form: Multipart,
) -> Response {
    if let Some(accept) = headers.get(header::ACCEPT).and_then(|a| a.to_str().ok()) {
        if !accept.contains("application/pkix-cert") && !accept.contains("*/*") {
            return (StatusCode::NOT_ACCEPTABLE, "this server returns application/pkix-cert").into_response();
        }
    }
    let EnrollmentForm {
        user,
        password,
        count,
        csr,
    } = match EnrollmentForm::read(form).await {
        Ok(f) => f,
        Err((status, why)) => return (status, [(header::CONTENT_TYPE, "text/plain")], why).into_response(),
    };
    let admitted = state
        .gate
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .admit(unix_ms(), remote.ip(), &user);
    if let Err(throttled) = admitted {
        if REFUSALS.allow(unix_ms()) {
            tracing::warn!(
                "enrollment from {remote} for {} throttled: {throttled:?}",
                crate::sip_report::quoted(&user)
            );
        }
        return too_many(&throttled);
    }
    let accounts = match state.dir.accounts() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("{e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, "account store unreadable").into_response();
        }
    };
    // Check the password even for unknown users, so timing tells nothing;
    // a few at a time, off the async workers.
    static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(PASSWORD_CHECKS);
    let Ok(_checking) = CHECKS.acquire().await else {
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response();
    };
    let known = accounts.get(&user).cloned();
    let ok = tokio::task::spawn_blocking(move || match known {
        Some(a) => a.check(&password),
        None => {
            // One derivation, as for a known user, against a fixed account.
            static DECOY: std::sync::OnceLock<overlay_dir::Account> = std::sync::OnceLock::new();
            DECOY
                .get_or_init(|| overlay_dir::Account::new("decoy"))
                .check(&password);
            false
        }
    })
    .await
    .unwrap_or(false);
    if !ok {
        state
            .gate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .failed(unix_ms(), remote.ip(), &user);
        if REFUSALS.allow(unix_ms()) {
            tracing::info!(
                "enrollment from {remote} refused for {}: failed_authentication",
                crate::sip_report::quoted(&user)
            );
        }
        return refuse("failed_authentication");
    }
    let count = match count {
        None => 1,
        Some(Some(n)) if (1..=MAX_NODE_IDS).contains(&n) => n,
        Some(_) => return refuse("Node-IDs_not_available"),
    };
    let Ok(key_id) = pki::csr_key_id(&csr) else {
        return refuse("bad_CSR");
    };
    let _guard = state.issuing.lock().unwrap_or_else(|p| p.into_inner());
    let mut enrolled = match state.dir.enrolled() {
        Ok(e) => e,
        Err(e) => {
            tracing::error!("{e}");
            return (StatusCode::INTERNAL_SERVER_ERROR, "enrollment store unreadable").into_response();
        }
    };
    // A key that already holds Node-IDs, under any user, keeps them: the
    // CSR proves possession of the key, and a peer's users must carry the
    // peer's Node-ID for USER-NODE-MATCH (RFC 7904 §3.3, decision 0006).
    let held = enrolled
        .values()
        .flatten()
        .find(|i| i.key == key_id)
        .map(|i| i.node_ids.clone());
    let issued = enrolled.entry(user.clone()).or_default();
    let node_ids = match held {
        Some(ids) if ids.len() == count || issued.iter().all(|i| i.key != key_id) => {
            issued.retain(|i| i.key != key_id);
            issued.push(Issued {
                key: key_id,
                node_ids: ids.clone(),
            });
            parse_node_ids(&ids)
        }
        _ => {
            let others = issued.iter().filter(|i| i.key != key_id);
            let (keys, held_ids) = others.fold((0, 0), |(k, n), i| (k + 1, n + i.node_ids.len()));
            if let Err(why) = may_add_key(&state.limits, keys, held_ids, count) {
                tracing::warn!("enrollment refused for {}: {why}", crate::sip_report::quoted(&user));
                return refuse("Node-IDs_not_available");
            }
            let ids: Vec<_> = (0..count).map(|_| pki::random_node_id(state.node_id_length)).collect();
            issued.retain(|i| i.key != key_id);
            issued.push(Issued {
                key: key_id,
                node_ids: ids.iter().map(|n| n.to_hex()).collect(),
            });
            ids
        }
    };
    let user_name = format!("{user}@{}", state.overlay);
    let cert = match state
        .authority
        .issue_node(&csr, &user_name, &node_ids, &state.overlay, SystemTime::now())
    {
        Ok(c) => c,
        Err(PkiError::BadCsr(why)) => {
            tracing::info!("enrollment refused for {user:?}: bad_CSR ({why})");
            return refuse("bad_CSR");
        }
        Err(e) => {
            tracing::error!("issuing for {user:?}: {e}");
            return refuse("bad_CSR");
        }
    };
    if let Err(e) = state.dir.save_enrolled(&enrolled) {
        tracing::error!("{e}");
        return (StatusCode::INTERNAL_SERVER_ERROR, "enrollment store unwritable").into_response();
    }
    tracing::info!(
        "enrolled {user_name} as {}",
        node_ids.iter().map(|n| n.to_hex()).collect::<Vec<_>>().join(", ")
    );
    ([(header::CONTENT_TYPE, "application/pkix-cert")], cert.to_vec()).into_response()
}

// ----- client -----------------------------------------------------------

#[derive(Debug, Error)]
pub enum EnrollError {
    #[error("{0} is not an https:// URL")]
    NotHttps(String),
    #[error("cannot reach {url}: {why}")]
    Unreachable { url: String, why: String },
    #[error("{url}: the server's certificate is not from the pinned CA ({why})")]
    UntrustedServer { url: String, why: String },
    #[error("{url} answered {status}: {body}")]
    Http { url: String, status: u16, body: String },
    #[error("enrollment refused: {token} ({meaning})")]
    Refused { token: String, meaning: &'static str },
    #[error("the configuration document is not acceptable: {0}")]
    Config(#[from] crate::config_doc::ConfigError),
    #[error("the configuration names no enrollment-server")]
    NoEnrollmentServer,
    #[error("the issued certificate is not acceptable: {0}")]
    Certificate(#[from] PkiError),
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error("--ca-fingerprint must be 64 hex digits (SHA-256 of the CA certificate), got {0:?}")]
    BadFingerprint(String),
}

/// How the client recognises the overlay's CA before it has the document.
#[derive(Debug, Clone)]
pub enum CaPin {
    Certificate(CertificateDer<'static>),
    /// SHA-256 of the CA certificate's DER.
    Fingerprint([u8; 32]),
}

impl CaPin {
    pub fn fingerprint(text: &str) -> Result<Self, EnrollError> {
        let compact: String = text.chars().filter(|c| *c != ':').collect();
        unhex(&compact)
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .map(CaPin::Fingerprint)
            .ok_or_else(|| EnrollError::BadFingerprint(text.to_string()))
    }

    fn matches(&self, cert: &[u8]) -> bool {
        match self {
            CaPin::Certificate(c) => c.as_ref() == cert,
            CaPin::Fingerprint(f) => ring::digest::digest(&ring::digest::SHA256, cert).as_ref() == f,
        }
    }
}

/// SHA-256 fingerprint of a certificate, as `p2psip init` prints it.
pub fn fingerprint(cert_der: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, cert_der).as_ref())
}

/// Accepts a server whose chain leads to the pinned CA, and whose
/// certificate names the host of the URL.
#[derive(Debug)]
struct PinnedCa {
    pin: CaPin,
    provider: Arc<rustls::crypto::CryptoProvider>,
    /// The CA certificate, learned from the chain when pinned by fingerprint.
    ca: Mutex<Option<CertificateDer<'static>>>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = match &self.pin {
            CaPin::Certificate(c) => c.clone(),
            CaPin::Fingerprint(_) => intermediates
                .iter()
                .find(|c| self.pin.matches(c))
                .map(|c| c.clone().into_owned())
                .ok_or(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::UnknownIssuer,
                ))?,
        };
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(ca.clone())
            .map_err(|_| rustls::Error::InvalidCertificate(rustls::CertificateError::BadEncoding))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        let verified = inner.verify_server_cert(end_entity, intermediates, server_name, ocsp, now)?;
        *self.ca.lock().unwrap_or_else(|p| p.into_inner()) = Some(ca);
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// A minimal HTTPS client that trusts only the pinned overlay CA.
pub struct Client {
    connector: tokio_rustls::TlsConnector,
    verifier: Arc<PinnedCa>,
}

/// §11.2: the configuration document `server` (an https:// base URL, or
/// any URL on it such as the enrollment server's) serves, over TLS whose
/// chain ends at the pinned CA. Not verified here.
pub async fn fetch_configuration(server: &str, pin: CaPin) -> Result<Vec<u8>, EnrollError> {
    Client::new(pin).configuration(server).await
}

impl Client {
    /// GET `/.well-known/reload-config` on the host of `server`.
    async fn configuration(&self, server: &str) -> Result<Vec<u8>, EnrollError> {
        let base = match server.trim_end_matches('/').split_once("://") {
            Some((scheme, rest)) => format!("{scheme}://{}", rest.split('/').next().unwrap_or(rest)),
            None => server.trim_end_matches('/').to_string(),
        };
        let config_url = format!("{base}/.well-known/reload-config");
        let (status, _, body) = self.request(&config_url, hyper::Method::GET, None, Vec::new()).await?;
        if status != 200 {
            return Err(EnrollError::Http {
                url: config_url,
                status,
                body: String::from_utf8_lossy(&body).chars().take(200).collect(),
            });
        }
        Ok(body)
    }

    pub fn new(pin: CaPin) -> Self {
        let provider = crypto_provider();
        let verifier = Arc::new(PinnedCa {
            pin,
            provider: provider.clone(),
            ca: Mutex::new(None),
        });
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default versions")
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        Client {
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            verifier,
        }
    }

    /// One HTTPS request; returns status, content type and body.
    pub async fn request(
        &self,
        url: &str,
        method: hyper::Method,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> Result<(u16, String, Vec<u8>), EnrollError> {
        tokio::time::timeout(CLIENT_TIMEOUT, self.request_inner(url, method, content_type, body))
            .await
            .unwrap_or_else(|_| {
                Err(EnrollError::Unreachable {
                    url: url.into(),
                    why: "timed out".into(),
                })
            })
    }

    async fn request_inner(
        &self,
        url: &str,
        method: hyper::Method,
        content_type: Option<String>,
        body: Vec<u8>,
    ) -> Result<(u16, String, Vec<u8>), EnrollError> {
        let unreachable = |why: String| EnrollError::Unreachable { url: url.into(), why };
        let uri: hyper::Uri = url.parse().map_err(|_| EnrollError::NotHttps(url.into()))?;
        if uri.scheme_str() != Some("https") {
            return Err(EnrollError::NotHttps(url.into()));
        }
        let host = uri.host().ok_or_else(|| EnrollError::NotHttps(url.into()))?;
        let bare_host = host.trim_start_matches('[').trim_end_matches(']').to_string();
        let port = uri.port_u16().unwrap_or(443);
        let tcp = TcpStream::connect((bare_host.as_str(), port))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        let name = ServerName::try_from(bare_host.clone()).map_err(|e| unreachable(e.to_string()))?;
        let tls = self.connector.connect(name, tcp).await.map_err(|e| {
            let why = e.to_string();
            if why.contains("certificate") || why.contains("Certificate") {
                EnrollError::UntrustedServer { url: url.into(), why }
            } else {
                unreachable(why)
            }
        })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(header::HOST, uri.authority().map(|a| a.as_str()).unwrap_or(host))
            .header(header::ACCEPT, "application/pkix-cert, application/p2p-overlay+xml");
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| unreachable(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| unreachable(e.to_string()))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let body = Limited::new(resp.into_body(), crate::config_doc::MAX_DOCUMENT_SIZE)
            .collect()
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .to_bytes()
            .to_vec();
        Ok((status, content_type, body))
    }
}

/// What enrollment produced.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub overlay: String,
    pub user: String,
    pub node_ids: Vec<reload_wire::NodeId>,
    /// The node was enrolled already: this user was added to it.
    pub added_user: bool,
}

/// §11.2-§11.3: fetch and verify the configuration from `server` (an
/// https:// base URL), enroll `user` and store key, certificate, CA and
/// configuration in `node_dir`. A key already in `node_dir` is reused, so
/// enrolling again keeps the Node-IDs.
pub async fn enroll(
    server: &str,
    pin: CaPin,
    user: &str,
    password: &str,
    node_dir: &Path,
) -> Result<Enrolled, EnrollError> {
    let client = Client::new(pin);
    let body = client.configuration(server).await?;
    let ca = client
        .verifier
        .ca
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
        .expect("set by a successful handshake");
    let document = String::from_utf8(body)
        .map_err(|_| EnrollError::Config(crate::config_doc::ConfigError::Xml("the document is not UTF-8".into())))?;
    let config = verify_config(&document, &ca)?;
    let enroll_url = config
        .enrollment_servers
        .first()
        .cloned()
        .ok_or(EnrollError::NoEnrollmentServer)?;

    std::fs::create_dir_all(node_dir).map_err(|source| DirError::Io {
        path: node_dir.to_path_buf(),
        source,
    })?;
    let key_path = node_dir.join("node.key");
    let key = if key_path.exists() {
        pki::key_from_pem(&overlay_dir::read(&key_path)?)?
    } else {
        pki::generate_key()?
    };
    let csr = pki::make_csr(&key, user)?;
    let (form, content_type) = multipart(&[
        ("username", None, user.as_bytes()),
        ("password", None, password.as_bytes()),
        ("csr", Some("application/pkcs10"), &csr),
    ]);
    let (status, _, body) = client
        .request(&enroll_url, hyper::Method::POST, Some(content_type), form)
        .await?;
    if status == 403 {
        let token = String::from_utf8_lossy(&body).trim().to_string();
        let meaning = match token.as_str() {
            "failed_authentication" => "wrong user name or password",
            "username_not_available" => "the server does not allow this user name",
            "Node-IDs_not_available" => "the server does not issue that many Node-IDs",
            "bad_CSR" => "the server could not use the certificate request",
            _ => "reason unknown",
        };
        return Err(EnrollError::Refused { token, meaning });
    }
    if status != 200 {
        return Err(EnrollError::Http {
            url: enroll_url,
            status,
            body: String::from_utf8_lossy(&body).chars().take(200).collect(),
        });
    }
    let cert: CertificateDer = body.into();
    // §11.3: the certificate must chain to a root-cert of the configuration.
    let info = config.trust_store().verify(&cert, &[], SystemTime::now())?;

    // Enrolling another user into an enrolled node adds a user the node
    // serves (its phones register here) and keeps the node's identity.
    let node_user = overlay_dir::read(&node_dir.join("node.crt"))
        .ok()
        .and_then(|pem| pki::pem_to_der(&pem).ok())
        .and_then(|der| pki::cert_info(&der, &config.instance_name, config.node_id_length).ok())
        .map(|i| i.user);
    let added_user = node_user.is_some_and(|u| u != info.user);
    if !added_user {
        write(&key_path, key.serialize_pem().as_bytes(), true)?;
        write(&node_dir.join("node.crt"), pki::der_to_pem(&cert).as_bytes(), false)?;
        write(&node_dir.join("ca.crt"), pki::der_to_pem(&ca).as_bytes(), false)?;
        write(&node_dir.join("reload-config.xml"), document.as_bytes(), false)?;
    }
    crate::node_dir::save_sip_user(node_dir, user, &config.instance_name, password, &cert)?;
    Ok(Enrolled {
        overlay: config.instance_name,
        user: info.user,
        node_ids: info.node_ids,
        added_user,
    })
}

/// An RFC 7578 multipart/form-data body and its content type.
pub fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (Vec<u8>, String) {
    let mut nonce = [0u8; 12];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut nonce).expect("system randomness");
    let boundary = format!("p2psip-{}", hex(&nonce));
    let mut body = Vec::new();
    for (name, content_type, value) in fields {
        body.extend_from_slice(
            format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n").as_bytes(),
        );
        if let Some(ct) = content_type {
            body.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n");
        body.extend_from_slice(value);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (body, format!("multipart/form-data; boundary={boundary}"))
}
