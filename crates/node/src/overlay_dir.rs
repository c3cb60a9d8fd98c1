//! The directory `p2psip init` creates for a new overlay: its CA, the
//! configuration signer, the signed configuration document, the
//! enrollment users and the enrollment server's TLS certificate.
//!
//! ```text
//! ca.crt ca.key            the overlay's root (root-cert)
//! signer.crt signer.key    configuration-signer and kind-signer
//! reload-config.xml        the signed document served at /.well-known/reload-config
//! users.json               enrollment accounts (PBKDF2 password hashes)
//! enrolled.json            Node-IDs issued, by user and key (§11.3)
//! server.crt server.key    HTTPS certificate of the enrollment server
//! ```

use crate::config_doc::{rfc3339, Configuration};
use crate::identity::CertSecurity;
use crate::pki::{self, Authority, PkiError};
use reload_wire::{hex, unhex, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use thiserror::Error;

/// PBKDF2-HMAC-SHA256 rounds for stored passwords.
const PBKDF2_ROUNDS: u32 = 100_000;
/// How long a configuration document stays valid (§11.1 expiration).
const CONFIG_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

#[derive(Debug, Error)]
pub enum DirError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{0} is not empty (an overlay or a node may live there); give a new or empty --dir")]
    NotEmpty(PathBuf),
    #[error("{0} holds no overlay (no ca.key); create one with `p2psip init --dir DIR --overlay NAME`")]
    Missing(PathBuf),
    #[error("{path}: {problem}")]
    Corrupt { path: PathBuf, problem: String },
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("user name {0:?} is not allowed: use letters, digits and . _ - only")]
    BadUserName(String),
    #[error("{path}: {source}")]
    Config {
        path: PathBuf,
        source: crate::config_doc::ConfigError,
    },
    #[error("the new configuration is for overlay {new}, this directory's is {current}")]
    OtherOverlay { current: String, new: String },
    #[error("a peer would refuse the new configuration: {0}")]
    Refused(overlay::ConfigRefusal),
}

pub(crate) fn read(path: &Path) -> Result<String, DirError> {
    std::fs::read_to_string(path).map_err(|source| DirError::Io {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn write(path: &Path, text: &[u8], secret: bool) -> Result<(), DirError> {
    let io = |source| DirError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(io)?;
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)
}

/// §11.3 asks servers to allow only legal characters in user names.
pub fn check_user_name(user: &str) -> Result<(), DirError> {
    let ok = !user.is_empty()
        && user.len() <= 64
        && user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(DirError::BadUserName(user.to_string()))
    }
}

/// One enrollment account.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Account {
    pub salt: String,
    pub rounds: u32,
    pub pbkdf2_sha256: String,
}

impl Account {
    pub fn new(password: &str) -> Self {
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt).expect("system randomness");
        let mut out = [0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(PBKDF2_ROUNDS).expect("nonzero"),
            &salt,
            password.as_bytes(),
            &mut out,
        );
        Account {
            salt: hex(&salt),
            rounds: PBKDF2_ROUNDS,
            pbkdf2_sha256: hex(&out),
        }
    }

    /// Constant-time password check.
    pub fn check(&self, password: &str) -> bool {
        let (Some(salt), Some(expected), Some(rounds)) = (
            unhex(&self.salt),
            unhex(&self.pbkdf2_sha256),
            NonZeroU32::new(self.rounds),
        ) else {
            return false;
        };
        ring::pbkdf2::verify(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            rounds,
            &salt,
            password.as_bytes(),
            &expected,
        )
        .is_ok()
    }
}

/// Node-IDs issued to one key of a user.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Issued {
    /// SHA-256 of the subjectPublicKeyInfo, hex.
    pub key: String,
    /// Node-IDs in hex.
    pub node_ids: Vec<String>,
}

/// What `init` needs to know.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub overlay: String,
    pub users: Vec<(String, String)>,
    pub enrollment_url: String,
    pub bootstrap: Vec<SocketAddr>,
    /// The multicast group and port for LAN bootstrap (our extension).
    pub multicast_bootstrap: Option<SocketAddr>,
    /// DNS names and IP addresses the enrollment server's certificate names.
    pub server_hosts: Vec<String>,
    /// Links by ICE and DTLS (`<no-ice>false</no-ice>`), not TLS alone.
    pub ice: bool,
    /// `<turn-density>` (RFC 6940 §9).
    pub turn_density: u8,
}

/// An overlay's directory.
pub struct OverlayDir {
    pub path: PathBuf,
}

impl OverlayDir {
    pub fn open(path: &Path) -> Result<Self, DirError> {
        if !path.join("ca.key").exists() {
            return Err(DirError::Missing(path.to_path_buf()));
        }
        Ok(OverlayDir {
            path: path.to_path_buf(),
        })
    }

    /// Creates a new overlay in `path`, which must be new or empty:
    /// writing over a node directory (or another overlay) would replace
    /// the CA and configuration it runs on.
    pub fn init(path: &Path, opts: &InitOptions) -> Result<Self, DirError> {
        if path.read_dir().is_ok_and(|mut entries| entries.next().is_some()) {
            return Err(DirError::NotEmpty(path.to_path_buf()));
        }
        for (u, _) in &opts.users {
            check_user_name(u)?;
        }
        std::fs::create_dir_all(path).map_err(|source| DirError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let now = SystemTime::now();
        let ca = Authority::create(&opts.overlay, now)?;
        let dir = OverlayDir {
            path: path.to_path_buf(),
        };

        let signer_key = pki::generate_key()?;
        let signer_id = pki::random_node_id(16);
        let csr = pki::make_csr(&signer_key, "configuration-signer")?;
        let signer_user = format!("configuration-signer@{}", opts.overlay);
        let signer_cert = ca.issue_node(&csr, &signer_user, &[signer_id], &opts.overlay, now)?;

        let mut config = Configuration::new(&opts.overlay);
        config.expiration = Some(rfc3339(now + CONFIG_VALIDITY));
        config.root_certs = vec![ca.cert_der.clone()];
        config.enrollment_servers = vec![opts.enrollment_url.clone()];
        config.bootstrap_nodes = opts.bootstrap.clone();
        config.multicast_bootstrap = opts.multicast_bootstrap;
        config.no_ice = !opts.ice;
        config.turn_density = opts.turn_density;
        config.configuration_signers = vec![signer_id];
        config.kind_signers = vec![signer_id];
        let signer = CertSecurity::new(
            pki::key_from_pem(&signer_key.serialize_pem())?,
            signer_cert.to_vec(),
            signer_id,
            config.trust_store(),
        )?;
        let document = config.to_signed_document(&signer);

        let (server_cert, server_key) = ca.issue_server(&opts.server_hosts, now)?;
        let mut server_chain = pki::der_to_pem(&server_cert);
        server_chain.push_str(&ca.cert_pem);

        write(&dir.file("ca.crt"), ca.cert_pem.as_bytes(), false)?;
        write(&dir.file("signer.crt"), pki::der_to_pem(&signer_cert).as_bytes(), false)?;
        write(&dir.file("signer.key"), signer_key.serialize_pem().as_bytes(), true)?;
        write(&dir.file("reload-config.xml"), document.as_bytes(), false)?;
        write(&dir.file("server.crt"), server_chain.as_bytes(), false)?;
        write(&dir.file("server.key"), server_key.serialize_pem().as_bytes(), true)?;
        let accounts: BTreeMap<String, Account> =
            opts.users.iter().map(|(u, p)| (u.clone(), Account::new(p))).collect();
        dir.save_accounts(&accounts)?;
        dir.save_enrolled(&BTreeMap::new())?;
        // Last: its presence marks a complete overlay directory.
        write(&dir.file("ca.key"), ca.key_pem().as_bytes(), true)?;
        Ok(dir)
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    pub fn authority(&self) -> Result<Authority, DirError> {
        Ok(Authority::load(
            &read(&self.file("ca.crt"))?,
            &read(&self.file("ca.key"))?,
        )?)
    }

    /// A certificate for the overlay's SIP domain, issued by its CA, for
    /// phones' TLS (`peer --sip-tls`): `DIR/sip-tls.crt` (the certificate,
    /// then the CA's) and `DIR/sip-tls.key`. Phones trust it once they
    /// trust `ca.crt`.
    pub fn issue_sip_certificate(&self, dir: &Path) -> Result<(PathBuf, PathBuf), DirError> {
        let domain = self.configuration()?.instance_name;
        let ca = self.authority()?;
        let (cert, key) = ca.issue_sip_domain(&[domain], std::time::SystemTime::now())?;
        std::fs::create_dir_all(dir).map_err(|source| DirError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let (cert_path, key_path) = (dir.join("sip-tls.crt"), dir.join("sip-tls.key"));
        let chain = pki::der_to_pem(&cert) + &ca.cert_pem;
        write(&cert_path, chain.as_bytes(), false)?;
        write(&key_path, key.serialize_pem().as_bytes(), true)?;
        Ok((cert_path, key_path))
    }

    pub fn config_document(&self) -> Result<String, DirError> {
        read(&self.file("reload-config.xml"))
    }

    /// The configuration signer (`signer.crt`, `signer.key`), which signs
    /// the configuration and its Kinds (§11.1).
    pub fn signer(&self) -> Result<CertSecurity, DirError> {
        let config = self.configuration()?;
        let cert = pki::pem_to_der(&read(&self.file("signer.crt"))?)?;
        let info = pki::cert_info(&cert, &config.instance_name, config.node_id_length)?;
        let key = pki::key_from_pem(&read(&self.file("signer.key"))?)?;
        let id = *info.node_ids.first().ok_or_else(|| DirError::Corrupt {
            path: self.file("signer.crt"),
            problem: "the certificate carries no Node-ID".into(),
        })?;
        Ok(CertSecurity::new(key, cert.to_vec(), id, config.trust_store())?)
    }

    fn configuration(&self) -> Result<Configuration, DirError> {
        let path = self.file("reload-config.xml");
        crate::config_doc::SignedConfiguration::parse(&read(&path)?, None)
            .map(|s| s.configuration)
            .map_err(|source| DirError::Config { path, source })
    }

    /// Publishes `edited` (a configuration document, signed or not, as
    /// `p2psip config show` prints it and the operator changed it) as the
    /// overlay's next configuration (§6.5.4, §11.1): its sequence follows
    /// the current one unless it is newer already, it is signed by the
    /// configuration signer, checked as a peer would check it, and written
    /// where the enrollment server serves it. Returns the signed document.
    pub fn publish(&self, edited: &str) -> Result<(u16, String), DirError> {
        use overlay::ConfigurationJudge;
        let path = self.file("reload-config.xml");
        let current_document = read(&path)?;
        let current = self.configuration()?;
        let mut next = crate::config_doc::SignedConfiguration::parse(edited, None)
            .map_err(|source| DirError::Config {
                path: PathBuf::from("the new document"),
                source,
            })?
            .configuration;
        if next.instance_name != current.instance_name {
            return Err(DirError::OtherOverlay {
                current: current.instance_name,
                new: next.instance_name,
            });
        }
        let newer = overlay::configuration::compare_sequences(next.sequence, current.sequence).is_gt();
        if !newer || next.sequence == overlay::configuration::ANY_SEQUENCE {
            // §6.3.2.1: 65535 is never a document's; after 65534 comes 0.
            next.sequence = match current.sequence.wrapping_add(1) {
                overlay::configuration::ANY_SEQUENCE => 0,
                s => s,
            };
        }
        let document = next.to_signed_document(&self.signer()?);
        let ca = pki::pem_to_der(&read(&self.file("ca.crt"))?)?;
        let mut judge = crate::config_judge::DocumentJudge::new(&current_document, ca.to_vec()).map_err(|source| {
            DirError::Config {
                path: path.clone(),
                source,
            }
        })?;
        judge.judge_document(document.as_bytes()).map_err(DirError::Refused)?;
        judge.check_runnable(document.as_bytes()).map_err(DirError::Refused)?;
        write(&path, document.as_bytes(), false)?;
        Ok((next.sequence, document))
    }

    fn load_json<T: for<'de> Deserialize<'de> + Default>(&self, name: &str) -> Result<T, DirError> {
        let path = self.file(name);
        if !path.exists() {
            return Ok(T::default());
        }
        serde_json::from_str(&read(&path)?).map_err(|e| DirError::Corrupt {
            path,
            problem: e.to_string(),
        })
    }

    pub fn accounts(&self) -> Result<BTreeMap<String, Account>, DirError> {
        self.load_json("users.json")
    }

    pub fn save_accounts(&self, accounts: &BTreeMap<String, Account>) -> Result<(), DirError> {
        let text = serde_json::to_vec_pretty(accounts).expect("serialisable");
        write(&self.file("users.json"), &text, true)
    }

    pub fn enrolled(&self) -> Result<BTreeMap<String, Vec<Issued>>, DirError> {
        self.load_json("enrolled.json")
    }

    pub fn save_enrolled(&self, enrolled: &BTreeMap<String, Vec<Issued>>) -> Result<(), DirError> {
        let text = serde_json::to_vec_pretty(enrolled).expect("serialisable");
        write(&self.file("enrolled.json"), &text, false)
    }
}

/// Node-ID hex list to Node-IDs, skipping what does not parse.
pub fn parse_node_ids(hexes: &[String]) -> Vec<NodeId> {
    hexes
        .iter()
        .filter_map(|h| unhex(h))
        .filter_map(|b| NodeId::from_slice(&b).ok())
        .collect()
}
