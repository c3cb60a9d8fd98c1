//! SIP over TLS for phones (RFC 3261 §26.2; issue 34 §5): the peer's
//! phones listener for TLS, presenting a certificate for the overlay's
//! domain (RFC 5922 §7.1: a phone checks that the certificate names the
//! domain it registers in). The files come from the operator, or from
//! `p2psip sip-cert`, which has the overlay's CA issue one.
//!
//! Phones are not asked for certificates: they authenticate with digest,
//! as over UDP and TCP.
//!
//! TLS to other domains' servers checks that their certificate names the
//! domain the request is for (RFC 5922 §4), from the system's trust
//! anchors and those the operator adds; the peer presents its domain's
//! certificate when it has one.

use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

/// Why the SIP TLS certificate cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SipTlsError {
    #[error("cannot read {path}: {problem}")]
    Unreadable { path: PathBuf, problem: String },
    #[error("{path} holds no certificate in PEM")]
    NoCertificate { path: PathBuf },
    #[error("{path} names {names:?}, not the overlay's domain {domain}: phones would refuse it (RFC 5922); issue one with `p2psip sip-cert`")]
    WrongName {
        path: PathBuf,
        names: Vec<String>,
        domain: String,
    },
    #[error("the certificate and key do not make a TLS server: {0}")]
    Unusable(String),
}

/// Where Debian keeps the system's trust anchors.
const SYSTEM_TRUST: &str = "/etc/ssl/certs/ca-certificates.crt";

fn unreadable(path: &Path, problem: String) -> SipTlsError {
    SipTlsError::Unreadable {
        path: path.to_path_buf(),
        problem,
    }
}

/// The PEM certificates in `path`.
fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, SipTlsError> {
    use rustls::pki_types::pem::PemObject;
    CertificateDer::pem_file_iter(path)
        .map_err(|e| unreadable(path, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| unreadable(path, e.to_string()))
}

fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, SipTlsError> {
    use rustls::pki_types::pem::PemObject;
    PrivateKeyDer::from_pem_file(path).map_err(|e| unreadable(path, e.to_string()))
}

/// TLS as a client of other domains' servers: trusting the system's
/// anchors and those in `extra_cas`, presenting `own` (certificate chain
/// and key files) when given.
pub fn client_config(
    extra_cas: &[PathBuf],
    own: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, SipTlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let system = Path::new(SYSTEM_TRUST);
    let mut files: Vec<&Path> = extra_cas.iter().map(PathBuf::as_path).collect();
    if system.exists() {
        files.push(system);
    }
    for file in files {
        for cert in certificates(file)? {
            // One anchor the verifier cannot use does not spoil the others.
            let _ = roots.add(cert);
        }
    }
    let builder = rustls::ClientConfig::builder_with_provider(crate::enrollment::crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SipTlsError::Unusable(e.to_string()))?
        .with_root_certificates(roots);
    let config = match own {
        Some((cert, key)) => builder
            .with_client_auth_cert(certificates(cert)?, private_key(key)?)
            .map_err(|e| SipTlsError::Unusable(e.to_string()))?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A TLS server configuration for the phones of `domain`, from a PEM
/// certificate chain (the peer's first) and its PEM private key.
pub fn server_config(cert: &Path, key: &Path, domain: &str) -> Result<Arc<rustls::ServerConfig>, SipTlsError> {
    let chain = certificates(cert)?;
    let leaf = chain.first().ok_or_else(|| SipTlsError::NoCertificate {
        path: cert.to_path_buf(),
    })?;
    let names = dns_names(leaf).map_err(|e| unreadable(cert, e))?;
    if !names.iter().any(|n| n.eq_ignore_ascii_case(domain)) {
        return Err(SipTlsError::WrongName {
            path: cert.to_path_buf(),
            names,
            domain: domain.to_string(),
        });
    }
    let key = private_key(key)?;
    let config = rustls::ServerConfig::builder_with_provider(crate::enrollment::crypto_provider())
        .with_safe_default_protocol_versions()
        .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
        .map_err(|e| SipTlsError::Unusable(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The DNS names a certificate's subjectAltName carries.
fn dns_names(der: &CertificateDer) -> Result<Vec<String>, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let san = cert.subject_alternative_name().map_err(|e| e.to_string())?;
    Ok(san
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(name) => Some(name.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn write_cert(dir: &Path, names: &[&str]) -> (PathBuf, PathBuf) {
        let ca = crate::pki::Authority::create("overlay.test", SystemTime::now()).unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let (cert, key) = ca.issue_sip_domain(&names, SystemTime::now()).unwrap();
        let (cert_path, key_path) = (dir.join("sip.crt"), dir.join("sip.key"));
        std::fs::write(&cert_path, crate::pki::der_to_pem(&cert)).unwrap();
        std::fs::write(&key_path, key.serialize_pem()).unwrap();
        (cert_path, key_path)
    }

    #[test]
    fn a_certificate_for_the_overlays_domain_serves_and_another_is_refused() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = std::env::temp_dir().join(format!("p2psip-sip-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (cert, key) = write_cert(&dir, &["overlay.test"]);
        assert!(server_config(&cert, &key, "OVERLAY.test").is_ok());
        let err = server_config(&cert, &key, "other.test").unwrap_err();
        assert!(err.to_string().contains("not the overlay's domain other.test"), "{err}");
        let missing = server_config(&dir.join("none.crt"), &key, "overlay.test").unwrap_err();
        assert!(missing.to_string().starts_with("cannot read"), "{missing}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
