//! The directory `p2psip enroll` fills and `p2psip peer` runs from.
//!
//! ```text
//! node.key node.crt     this node's key and certificate (§11.3)
//! ca.crt                the CA the operator pinned at enrollment
//! reload-config.xml     the signed configuration document (§11.1)
//! peers.json            peers linked in the last run, tried first at boot (§11.4)
//! peer.lock             held (flock) by the one `p2psip peer` running here; holds its pid
//! users/NAME.crt        certificate of each user enrolled here (same key and
//!                       Node-ID as the node); the node signs as them (RFC 7904)
//! users/NAME.json       their SIP digest secrets: H(user:realm:password) for
//!                       MD5 and SHA-256, never the password (RFC 7616 §3.4.2)
//! ```

use crate::config_doc::{ConfigError, Configuration, SignedConfiguration};
use crate::identity::{CertSecurity, CertVerifier};
use crate::overlay_dir::{read, write, DirError};
use crate::pki::{self, CertInfo, PkiError, TrustStore};
use rcgen::KeyPair;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use thiserror::Error;

/// The suggested number of peers to cache (§11.4).
pub const PEER_CACHE_SIZE: usize = 10;

#[derive(Debug, Error)]
pub enum NodeDirError {
    #[error(transparent)]
    Dir(#[from] DirError),
    #[error("{dir}: no node.crt; enroll first with `p2psip enroll --server URL --ca-cert FILE --user U --password P --dir {dir}`")]
    NotEnrolled { dir: String },
    #[error("{path}: {source}")]
    Config { path: PathBuf, source: ConfigError },
    #[error("{path}: {source}")]
    Certificate { path: PathBuf, source: PkiError },
    #[error("{dir} is in use by pid {pid}: one node directory serves one peer process; stop that one first, or enroll another directory for a second peer")]
    InUse { dir: String, pid: String },
    #[error("cannot lock {path}: {source}")]
    Lock { path: PathBuf, source: std::io::Error },
}

/// The lock a running peer holds on its node directory: a second process
/// on the same directory (a copied directory, a second start by mistake)
/// would present the same Node-ID and certificate, and the two would
/// keep displacing each other in the overlay. Released when dropped or
/// when the process dies, whatever way (flock(2) locks die with their
/// holder).
#[derive(Debug)]
pub struct DirLock {
    _file: std::fs::File,
}

impl DirLock {
    /// Takes `path/peer.lock` and writes this process's pid into it; a
    /// directory another process holds is refused with that process's pid.
    pub fn take(path: &Path) -> Result<DirLock, NodeDirError> {
        use std::io::{Read, Seek, Write};
        let lock_path = path.join("peer.lock");
        let lock_err = |source| NodeDirError::Lock {
            path: lock_path.clone(),
            source,
        };
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(lock_err)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(NodeDirError::InUse {
                    dir: path.display().to_string(),
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.chars().take(20).collect()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(lock_err(e)),
        }
        file.set_len(0).map_err(lock_err)?;
        file.rewind().map_err(lock_err)?;
        writeln!(file, "{}", std::process::id()).map_err(lock_err)?;
        Ok(DirLock { _file: file })
    }
}

/// A node's directory, loaded and checked.
pub struct NodeDir {
    pub path: PathBuf,
    pub config: Configuration,
    /// The signed document `config` was read from (`reload-config.xml`).
    pub document: String,
    /// The CA the node was enrolled under (`ca.crt`, DER).
    pub pinned_ca: Vec<u8>,
    pub key: KeyPair,
    pub cert_der: Vec<u8>,
    pub info: CertInfo,
}

impl NodeDir {
    /// Loads and checks everything a peer needs: the configuration verifies
    /// against the pinned CA, the certificate against the configuration's
    /// roots, and the key is the certificate's.
    pub fn load(path: &Path) -> Result<Self, NodeDirError> {
        let cert_path = path.join("node.crt");
        if !cert_path.exists() {
            return Err(NodeDirError::NotEnrolled {
                dir: path.display().to_string(),
            });
        }
        let config_path = path.join("reload-config.xml");
        let pinned = pki::pem_to_der(&read(&path.join("ca.crt"))?).map_err(|source| NodeDirError::Certificate {
            path: path.join("ca.crt"),
            source,
        })?;
        let document = read(&config_path)?;
        let config = verify_config(&document, &pinned).map_err(|source| NodeDirError::Config {
            path: config_path.clone(),
            source,
        })?;
        let cert_err = |source| NodeDirError::Certificate {
            path: cert_path.clone(),
            source,
        };
        let cert_der = pki::pem_to_der(&read(&cert_path)?).map_err(cert_err)?;
        let info = config
            .trust_store()
            .verify(&cert_der, &[], SystemTime::now())
            .map_err(cert_err)?;
        let key = pki::key_from_pem(&read(&path.join("node.key"))?).map_err(|source| NodeDirError::Certificate {
            path: path.join("node.key"),
            source,
        })?;
        if !pki::key_matches(&key, &cert_der) {
            return Err(cert_err(PkiError::BadKey("node.key is not the key of node.crt".into())));
        }
        Ok(NodeDir {
            path: path.to_path_buf(),
            config,
            document,
            pinned_ca: pinned.to_vec(),
            key,
            cert_der: cert_der.to_vec(),
            info,
        })
    }

    /// The engine's security for this node, signing as its first Node-ID.
    pub fn security(&self) -> Result<CertSecurity, NodeDirError> {
        self.security_with(self.config.trust_store())
    }

    /// [`security`](Self::security) judging others by `trust`, shared
    /// with the rest of the peer.
    pub fn security_with(&self, trust: TrustStore) -> Result<CertSecurity, NodeDirError> {
        let key = pki::key_from_pem(&self.key.serialize_pem()).map_err(|source| NodeDirError::Certificate {
            path: self.path.join("node.key"),
            source,
        })?;
        CertSecurity::new(key, self.cert_der.clone(), self.info.node_ids[0], trust).map_err(|source| {
            NodeDirError::Certificate {
                path: self.path.join("node.crt"),
                source,
            }
        })
    }

    /// Peers cached by the last run.
    pub fn cached_peers(&self) -> Vec<SocketAddr> {
        std::fs::read_to_string(self.path.join("peers.json"))
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// Keeps a configuration document the peer adopted (§6.5.4), so that
    /// the next start runs on it.
    pub fn save_config(&mut self, document: &str) -> Result<(), NodeDirError> {
        let config = verify_config(document, &self.pinned_ca).map_err(|source| NodeDirError::Config {
            path: self.path.join("reload-config.xml"),
            source,
        })?;
        write(&self.path.join("reload-config.xml"), document.as_bytes(), false)?;
        self.config = config;
        self.document = document.to_string();
        Ok(())
    }

    pub fn save_peers(&self, peers: &[SocketAddr]) {
        let peers: Vec<_> = peers.iter().take(PEER_CACHE_SIZE).collect();
        if let Ok(text) = serde_json::to_vec(&peers) {
            if let Err(e) = write(&self.path.join("peers.json"), &text, false) {
                tracing::warn!("cannot cache peers: {e}");
            }
        }
    }
}

/// Reads a configuration document and checks its signatures with a
/// verifier trusting only `pinned`, which must also be one of its roots.
pub fn load_config(path: &Path, pinned: &[u8]) -> Result<Configuration, NodeDirError> {
    let text = read(path)?;
    verify_config(&text, pinned).map_err(|source| NodeDirError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// [`load_config`] on text.
pub fn verify_config(text: &str, pinned: &[u8]) -> Result<Configuration, ConfigError> {
    let signed = SignedConfiguration::parse(text, None)?;
    let c = &signed.configuration;
    let trust = TrustStore::new(
        &c.instance_name,
        c.node_id_length,
        vec![pinned.to_vec().into()],
        c.bad_nodes.clone(),
    );
    signed.verify(&CertVerifier::new(trust))?;
    if !c.root_certs.iter().any(|r| r.as_ref() == pinned) {
        return Err(ConfigError::Invalid {
            element: "root-cert".into(),
            problem: "the pinned CA is not among the configuration's roots".into(),
        });
    }
    Ok(signed.configuration)
}

/// A user enrolled into a node: its phones register with this peer.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct SipUser {
    /// The account name, the user part of `sip:user@overlay`.
    pub user: String,
    /// The digest realm: the overlay's name.
    pub realm: String,
    pub ha1_md5: String,
    pub ha1_sha256: String,
}

impl SipUser {
    pub fn ha1(&self) -> sip::digest::Ha1 {
        sip::digest::Ha1 {
            md5: self.ha1_md5.clone(),
            sha256: self.ha1_sha256.clone(),
        }
    }
}

/// Writes `users/NAME.crt` and `users/NAME.json` for `user`.
pub fn save_sip_user(
    node_dir: &Path,
    user: &str,
    realm: &str,
    password: &str,
    cert_der: &[u8],
) -> Result<(), DirError> {
    let dir = node_dir.join("users");
    std::fs::create_dir_all(&dir).map_err(|source| DirError::Io {
        path: dir.clone(),
        source,
    })?;
    let ha1 = sip::digest::Ha1::new(user, realm, password);
    let record = SipUser {
        user: user.to_string(),
        realm: realm.to_string(),
        ha1_md5: ha1.md5,
        ha1_sha256: ha1.sha256,
    };
    let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    write(&dir.join(format!("{user}.json")), &json, true)?;
    write(
        &dir.join(format!("{user}.crt")),
        pki::der_to_pem(cert_der).as_bytes(),
        false,
    )
}

/// Deletes `users/NAME.crt` and `users/NAME.json`; whether the user was
/// there.
pub fn remove_sip_user(node_dir: &Path, user: &str) -> Result<bool, DirError> {
    crate::overlay_dir::check_user_name(user)?;
    let dir = node_dir.join("users");
    let mut found = false;
    for file in [format!("{user}.json"), format!("{user}.crt")] {
        let path = dir.join(file);
        match std::fs::remove_file(&path) {
            Ok(()) => found = true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(DirError::Io { path, source }),
        }
    }
    Ok(found)
}

/// Replaces the digest secrets of a user enrolled into the node, for a
/// new password; `false` when no such user is enrolled.
pub fn set_sip_password(node_dir: &Path, user: &str, password: &str) -> Result<bool, DirError> {
    crate::overlay_dir::check_user_name(user)?;
    let path = node_dir.join("users").join(format!("{user}.json"));
    if !path.exists() {
        return Ok(false);
    }
    let mut record: SipUser = serde_json::from_str(&read(&path)?).map_err(|e| DirError::Corrupt {
        path: path.clone(),
        problem: e.to_string(),
    })?;
    let ha1 = sip::digest::Ha1::new(user, &record.realm, password);
    record.ha1_md5 = ha1.md5;
    record.ha1_sha256 = ha1.sha256;
    let json = serde_json::to_vec_pretty(&record).unwrap_or_default();
    write(&path, &json, true)?;
    Ok(true)
}

/// The names of the users enrolled into a node directory, sorted.
pub fn sip_user_names(node_dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(node_dir.join("users")) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".json").map(str::to_string)
        })
        .collect();
    names.sort();
    names
}

impl NodeDir {
    /// The users enrolled into this node, with their certificates; a user
    /// whose files do not read is skipped with a warning.
    pub fn sip_users(&self) -> Vec<(SipUser, Vec<u8>)> {
        let dir = self.path.join("users");
        let mut out = Vec::new();
        for name in sip_user_names(&self.path) {
            let path = dir.join(format!("{name}.json"));
            let loaded = read(&path)
                .ok()
                .and_then(|t| serde_json::from_str::<SipUser>(&t).ok())
                .and_then(|u| {
                    let pem = read(&path.with_extension("crt")).ok()?;
                    Some((u, pki::pem_to_der(&pem).ok()?.to_vec()))
                });
            match loaded {
                Some(u) => out.push(u),
                None => tracing::warn!("{}: not a readable SIP user; skipped", path.display()),
            }
        }
        out
    }
}
