//! The overlay configuration document — RFC 6940 §11.1: XML in the
//! config-base and config-chord namespaces, valid against the RELAX NG
//! grammar of §11.1.1, each `<configuration>` signed by a
//! configuration-signer and each `<kind>` by a kind-signer. The signature
//! element holds a base64 SecurityBlock over the element's exact bytes.
//!
//! Choices (decision 0005): chord intervals are in seconds;
//! overlay-reliability-timer is read but never written, because the
//! §11.1.1 grammar omits it (a document carrying it does not validate);
//! multicast bootstrap is our extension element in [`NS_EXT`].

use crate::identity::{CertSecurity, CertVerifier};
use crate::pki::TrustStore;
use base64::Engine;
use overlay::{AccessPolicy, ChordConfig, KindDefinition, OverlayConfig, Signer, StorageQuota};
use quick_xml::events::Event;
use quick_xml::name::ResolveResult;
use quick_xml::NsReader;
use reload_wire::usages::kind_id;
use reload_wire::{unhex, DataModel, Decode, DecodeContext, Encode, NodeId, SecurityBlock};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::ops::Range;
use std::time::SystemTime;
use thiserror::Error;

pub const NS_BASE: &str = "urn:ietf:params:xml:ns:p2p:config-base";
pub const NS_CHORD: &str = "urn:ietf:params:xml:ns:p2p:config-chord";
/// Our extensions (foreign elements, allowed by the grammar).
pub const NS_EXT: &str = "urn:x-p2psip:config-ext:1";
/// The MIME type of the document (§11.1).
pub const CONTENT_TYPE: &str = "application/p2p-overlay+xml";
/// Largest document we read; a real one is a few kilobytes.
pub const MAX_DOCUMENT_SIZE: usize = 1 << 20;
const MAX_DEPTH: usize = 32;
/// The max-message-size our documents carry (§11.1; the RFC's default
/// when the element is absent is 5000). A ConfigUpdate (§6.5.4) carries
/// the whole signed document, some 7 KB with the standard Kinds, root
/// certificate and signatures, and must fit in one message.
pub const DEFAULT_MAX_MESSAGE_SIZE: u32 = 32_768;
/// The default port of bootstrap-node (§11.1).
pub const DEFAULT_PORT: u16 = 6084;

#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("not a well-formed XML document: {0}")]
    Xml(String),
    #[error("the document is larger than {MAX_DOCUMENT_SIZE} bytes")]
    TooLarge,
    #[error("the document nests elements deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("the root element is not <overlay> in {NS_BASE}")]
    NotAnOverlayDocument,
    #[error("no <configuration> for overlay {0:?}")]
    NoConfiguration(String),
    #[error("<{element}>: {problem}")]
    Invalid { element: String, problem: String },
    #[error("the configuration is not signed")]
    Unsigned,
    #[error("the configuration signature does not verify: {0}")]
    BadSignature(String),
    #[error("the configuration is signed by {0}, which is not a configuration-signer")]
    NotAConfigurationSigner(String),
    #[error("kind {0} is not signed by a kind-signer")]
    UnsignedKind(String),
}

fn invalid(element: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        element: element.to_string(),
        problem: problem.into(),
    }
}

/// RFC 6940 §9: TURN-SERVICE is NODE-MULTIPLE with at most 20 values
/// per node, so a relay can store at most 20 (and `turn-density` above
/// that could not be followed).
pub const MAX_TURN_DENSITY: u8 = 20;

/// One `<configuration>` element, interpreted.
#[derive(Debug, Clone, PartialEq)]
pub struct Configuration {
    pub instance_name: String,
    pub sequence: u16,
    /// The `expiration` attribute, RFC 3339 UTC.
    pub expiration: Option<String>,
    pub topology_plugin: String,
    pub node_id_length: usize,
    pub root_certs: Vec<CertificateDer<'static>>,
    pub enrollment_servers: Vec<String>,
    pub bootstrap_nodes: Vec<SocketAddr>,
    /// Our extension: the multicast group and port for LAN bootstrap.
    pub multicast_bootstrap: Option<SocketAddr>,
    /// Our extension `<p2psip:storage-quota>` (decision 0030).
    pub storage_quota: StorageQuota,
    /// Our extension `<p2psip:proxy-peers>` (decision 0036).
    pub proxy_peers: ProxyPeers,
    pub max_message_size: u32,
    pub initial_ttl: u8,
    pub reliability_timer_ms: u64,
    pub chord_update_interval_s: u64,
    pub chord_ping_interval_s: u64,
    pub chord_reactive: bool,
    pub clients_permitted: bool,
    pub no_ice: bool,
    /// §11.1, §9: the reciprocal of the share of peers that may relay;
    /// each relay stores its TURN-SERVICE value at this many places (0: no
    /// relays). At most 20, TURN-SERVICE's NODE-MULTIPLE maximum.
    pub turn_density: u8,
    pub overlay_link_protocols: Vec<String>,
    pub configuration_signers: Vec<NodeId>,
    pub kind_signers: Vec<NodeId>,
    pub bad_nodes: Vec<NodeId>,
    pub mandatory_extensions: Vec<String>,
    pub kinds: Vec<KindDefinition>,
}

impl Configuration {
    /// A configuration with the RFC's defaults and the standard Kinds.
    pub fn new(instance_name: &str) -> Self {
        Configuration {
            instance_name: instance_name.to_string(),
            sequence: 1,
            expiration: None,
            topology_plugin: "CHORD-RELOAD".into(),
            node_id_length: 16,
            root_certs: Vec::new(),
            enrollment_servers: Vec::new(),
            bootstrap_nodes: Vec::new(),
            multicast_bootstrap: None,
            storage_quota: StorageQuota::DEFAULT,
            proxy_peers: ProxyPeers::default(),
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            initial_ttl: reload_wire::header::DEFAULT_INITIAL_TTL,
            reliability_timer_ms: 3000,
            chord_update_interval_s: 600,
            chord_ping_interval_s: 3600,
            chord_reactive: true,
            clients_permitted: true,
            no_ice: true,
            turn_density: 1,
            overlay_link_protocols: vec!["TLS".into()],
            configuration_signers: Vec::new(),
            kind_signers: Vec::new(),
            bad_nodes: Vec::new(),
            mandatory_extensions: Vec::new(),
            kinds: standard_kinds(),
        }
    }

    /// The roots and bad nodes certificates are judged by.
    pub fn trust_store(&self) -> TrustStore {
        TrustStore::new(
            &self.instance_name,
            self.node_id_length,
            self.root_certs.clone(),
            self.bad_nodes.clone(),
        )
    }

    /// What the engine runs on.
    pub fn overlay_config(&self) -> OverlayConfig {
        let mut c = OverlayConfig::new(self.instance_name.clone());
        c.configuration_sequence = self.sequence;
        c.node_id_length = self.node_id_length;
        c.max_message_size = self.max_message_size as usize;
        c.initial_ttl = self.initial_ttl;
        c.reliability_timer_ms = self.reliability_timer_ms;
        c.chord = ChordConfig {
            update_interval_ms: self.chord_update_interval_s * 1000,
            ping_interval_ms: self.chord_ping_interval_s * 1000,
            reactive: self.chord_reactive,
            ..ChordConfig::default()
        };
        c.kinds = self.kinds.clone();
        c.storage_quota = self.storage_quota;
        c
    }

    /// The `<configuration>` element, each `<kind>` signed with `signer`.
    fn to_xml(&self, signer: &CertSecurity) -> String {
        let mut x = String::new();
        x.push_str(&format!(
            "<configuration instance-name=\"{}\" sequence=\"{}\"",
            esc(&self.instance_name),
            self.sequence
        ));
        if let Some(e) = &self.expiration {
            x.push_str(&format!(" expiration=\"{}\"", esc(e)));
        }
        x.push_str(">\n");
        let el =
            |x: &mut String, name: &str, value: &str| x.push_str(&format!("    <{name}>{}</{name}>\n", esc(value)));
        el(&mut x, "topology-plugin", &self.topology_plugin);
        el(&mut x, "node-id-length", &self.node_id_length.to_string());
        for cert in &self.root_certs {
            el(
                &mut x,
                "root-cert",
                &base64::engine::general_purpose::STANDARD.encode(cert),
            );
        }
        for url in &self.enrollment_servers {
            el(&mut x, "enrollment-server", url);
        }
        for b in &self.bootstrap_nodes {
            x.push_str(&format!(
                "    <bootstrap-node address=\"{}\" port=\"{}\"/>\n",
                b.ip(),
                b.port()
            ));
        }
        el(&mut x, "clients-permitted", bool_str(self.clients_permitted));
        el(&mut x, "no-ice", bool_str(self.no_ice));
        el(&mut x, "turn-density", &self.turn_density.to_string());
        el(&mut x, "max-message-size", &self.max_message_size.to_string());
        el(&mut x, "initial-ttl", &self.initial_ttl.to_string());
        for p in &self.overlay_link_protocols {
            el(&mut x, "overlay-link-protocol", p);
        }
        for n in &self.configuration_signers {
            el(&mut x, "configuration-signer", &n.to_hex());
        }
        for n in &self.kind_signers {
            el(&mut x, "kind-signer", &n.to_hex());
        }
        for n in &self.bad_nodes {
            el(&mut x, "bad-node", &n.to_hex());
        }
        for m in &self.mandatory_extensions {
            el(&mut x, "mandatory-extension", m);
        }
        x.push_str(&format!(
            "    <chord:chord-update-interval>{}</chord:chord-update-interval>\n",
            self.chord_update_interval_s
        ));
        x.push_str(&format!(
            "    <chord:chord-ping-interval>{}</chord:chord-ping-interval>\n",
            self.chord_ping_interval_s
        ));
        x.push_str(&format!(
            "    <chord:chord-reactive>{}</chord:chord-reactive>\n",
            bool_str(self.chord_reactive)
        ));
        if let Some(m) = self.multicast_bootstrap {
            x.push_str(&format!(
                "    <p2psip:multicast-bootstrap address=\"{}\" port=\"{}\"/>\n",
                m.ip(),
                m.port()
            ));
        }
        // Written even at its defaults, so an operator editing `config
        // show` sees the limits there are.
        x.push_str(&format!(
            "    <p2psip:storage-quota per-user=\"{}\" per-node=\"{}\" total=\"{}\"/>\n",
            self.storage_quota.per_user_bytes, self.storage_quota.per_node_bytes, self.storage_quota.total_bytes
        ));
        if !self.proxy_peers.peers.is_empty() {
            x.push_str(&format!(
                "    <p2psip:proxy-peers outsiders=\"{}\">\n",
                esc(&self.proxy_peers.outsiders.to_string())
            ));
            for p in &self.proxy_peers.peers {
                x.push_str(&format!(
                    "      <p2psip:proxy-peer>{}</p2psip:proxy-peer>\n",
                    p.to_hex()
                ));
            }
            x.push_str("    </p2psip:proxy-peers>\n");
        }
        if !self.kinds.is_empty() {
            x.push_str("    <required-kinds>\n");
            for k in &self.kinds {
                let kind = kind_xml(k);
                x.push_str("      <kind-block>\n        ");
                x.push_str(&kind);
                x.push_str(&format!(
                    "\n        <kind-signature>{}</kind-signature>\n      </kind-block>\n",
                    sign_blob(signer, kind.as_bytes())
                ));
            }
            x.push_str("    </required-kinds>\n");
        }
        x.push_str("  </configuration>");
        x
    }

    /// The whole document, signed by `signer` (§11.1).
    pub fn to_signed_document(&self, signer: &CertSecurity) -> String {
        let configuration = self.to_xml(signer);
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<overlay xmlns=\"{NS_BASE}\" xmlns:chord=\"{NS_CHORD}\" xmlns:p2psip=\"{NS_EXT}\">\n  {configuration}\n  <signature>{}</signature>\n</overlay>\n",
            sign_blob(signer, configuration.as_bytes())
        )
    }
}

fn bool_str(b: bool) -> &'static str {
    if b {
        "true"
    } else {
        "false"
    }
}

fn esc(s: &str) -> std::borrow::Cow<'_, str> {
    quick_xml::escape::escape(s)
}

/// The Kinds every p2psip overlay carries, with their IANA definitions:
/// SIP-REGISTRATION (RFC 7904 §3), TURN-SERVICE (§9), CERTIFICATE_BY_NODE
/// and CERTIFICATE_BY_USER (§8). Sizes are ours (decision 0005).
pub fn standard_kinds() -> Vec<KindDefinition> {
    vec![
        KindDefinition {
            id: kind_id::SIP_REGISTRATION,
            name: "SIP-REGISTRATION".into(),
            data_model: DataModel::Dictionary,
            access: AccessPolicy::UserNodeMatch,
            max_count: 32,
            max_size: 1024,
        },
        KindDefinition {
            id: kind_id::TURN_SERVICE,
            name: "TURN-SERVICE".into(),
            data_model: DataModel::SingleValue,
            access: AccessPolicy::NodeMultiple { max: 20 },
            max_count: 1,
            max_size: 100,
        },
        KindDefinition {
            id: kind_id::CERTIFICATE_BY_NODE,
            name: "CERTIFICATE_BY_NODE".into(),
            data_model: DataModel::Array,
            access: AccessPolicy::NodeMatch,
            max_count: 2,
            max_size: 4096,
        },
        KindDefinition {
            id: kind_id::CERTIFICATE_BY_USER,
            name: "CERTIFICATE_BY_USER".into(),
            data_model: DataModel::Array,
            access: AccessPolicy::UserMatch,
            max_count: 16,
            max_size: 4096,
        },
    ]
}

/// The Kind-ID of a Kind registered with IANA, by name.
fn registered_kind(name: &str) -> Option<u32> {
    Some(match name {
        "SIP-REGISTRATION" => kind_id::SIP_REGISTRATION,
        "TURN-SERVICE" => kind_id::TURN_SERVICE,
        "CERTIFICATE_BY_NODE" => kind_id::CERTIFICATE_BY_NODE,
        "CERTIFICATE_BY_USER" => kind_id::CERTIFICATE_BY_USER,
        _ => return None,
    })
}

fn kind_xml(k: &KindDefinition) -> String {
    let ident = if registered_kind(&k.name) == Some(k.id) {
        format!("name=\"{}\"", esc(&k.name))
    } else {
        format!("id=\"{}\"", k.id)
    };
    let model = match k.data_model {
        DataModel::SingleValue => "SINGLE",
        DataModel::Array => "ARRAY",
        DataModel::Dictionary => "DICTIONARY",
    };
    let (access, multiple) = match k.access {
        AccessPolicy::UserMatch => ("USER-MATCH", None),
        AccessPolicy::NodeMatch => ("NODE-MATCH", None),
        AccessPolicy::UserNodeMatch => ("USER-NODE-MATCH", None),
        AccessPolicy::NodeMultiple { max } => ("NODE-MULTIPLE", Some(max)),
    };
    let mut x = format!(
        "<kind {ident}><data-model>{model}</data-model><access-control>{access}</access-control><max-count>{}</max-count><max-size>{}</max-size>",
        k.max_count, k.max_size
    );
    if let Some(m) = multiple {
        x.push_str(&format!("<max-node-multiple>{m}</max-node-multiple>"));
    }
    x.push_str("</kind>");
    x
}

/// §11.1: a SecurityBlock over the exact bytes, base64.
fn sign_blob(signer: &CertSecurity, blob: &[u8]) -> String {
    let block = SecurityBlock {
        certificates: signer.certificates(),
        signature: signer.sign(blob),
    };
    base64::engine::general_purpose::STANDARD.encode(block.to_bytes().unwrap_or_default())
}

// ----- reading ----------------------------------------------------------

/// An element of the parsed document.
#[derive(Debug, Default)]
struct Element {
    ns: Option<String>,
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Element>,
    /// Bytes of the element in the document, from `<` to `>`.
    span: Range<usize>,
}

impl Element {
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    fn is(&self, ns: &str, name: &str) -> bool {
        self.ns.as_deref() == Some(ns) && self.name == name
    }

    fn value(&self) -> &str {
        self.text.trim()
    }
}

fn parse_tree(text: &str) -> Result<Element, ConfigError> {
    if text.len() > MAX_DOCUMENT_SIZE {
        return Err(ConfigError::TooLarge);
    }
    let mut reader = NsReader::from_str(text);
    let mut stack: Vec<Element> = vec![Element::default()];
    loop {
        let start = reader.buffer_position() as usize;
        let (ns, event) = reader
            .read_resolved_event()
            .map_err(|e| ConfigError::Xml(format!("{e} after byte {start}")))?;
        let ns = match ns {
            ResolveResult::Bound(n) => Some(String::from_utf8_lossy(n.as_ref()).into_owned()),
            ResolveResult::Unbound => None,
            ResolveResult::Unknown(p) => {
                return Err(ConfigError::Xml(format!(
                    "undeclared namespace prefix {:?}",
                    String::from_utf8_lossy(&p)
                )))
            }
        };
        let end = reader.buffer_position() as usize;
        let (tag, empty) = match &event {
            Event::Start(e) => (Some(e), false),
            Event::Empty(e) => (Some(e), true),
            _ => (None, false),
        };
        if let Some(e) = tag {
            let mut attrs = Vec::new();
            for a in e.attributes() {
                let a = a.map_err(|e| ConfigError::Xml(e.to_string()))?;
                let value = a
                    .unescape_value()
                    .map_err(|e| ConfigError::Xml(e.to_string()))?
                    .into_owned();
                let (_, local) = reader.resolve_attribute(a.key);
                attrs.push((String::from_utf8_lossy(local.as_ref()).into_owned(), value));
            }
            let el = Element {
                ns,
                name: String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                attrs,
                span: start..end,
                ..Element::default()
            };
            if empty {
                stack.last_mut().expect("root").children.push(el);
            } else {
                if stack.len() > MAX_DEPTH {
                    return Err(ConfigError::TooDeep);
                }
                stack.push(el);
            }
            continue;
        }
        match event {
            Event::End(_) => {
                let mut el = stack.pop().expect("balanced by the reader");
                el.span.end = end;
                stack
                    .last_mut()
                    .ok_or_else(|| ConfigError::Xml("unbalanced end tag".into()))?
                    .children
                    .push(el);
            }
            Event::Text(t) => {
                let s = t.decode().map_err(|e| ConfigError::Xml(e.to_string()))?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::CData(t) => {
                let s = t.decode().map_err(|e| ConfigError::Xml(e.to_string()))?;
                stack.last_mut().expect("root").text.push_str(&s);
            }
            Event::GeneralRef(r) => {
                let c = match r.resolve_char_ref().map_err(|e| ConfigError::Xml(e.to_string()))? {
                    Some(c) => c,
                    None => match r.as_ref() {
                        b"amp" => '&',
                        b"lt" => '<',
                        b"gt" => '>',
                        b"quot" => '"',
                        b"apos" => '\'',
                        other => {
                            return Err(ConfigError::Xml(format!(
                                "unknown entity &{};",
                                String::from_utf8_lossy(other)
                            )))
                        }
                    },
                };
                stack.last_mut().expect("root").text.push(c);
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if stack.len() != 1 {
        return Err(ConfigError::Xml("unexpected end of document".into()));
    }
    let mut root = stack.pop().expect("document");
    root.children
        .pop()
        .filter(|r| root.children.is_empty() && r.is(NS_BASE, "overlay"))
        .ok_or(ConfigError::NotAnOverlayDocument)
}

/// A configuration as read from a document, with what its signatures cover.
#[derive(Debug, Clone)]
pub struct SignedConfiguration {
    pub configuration: Configuration,
    /// The exact `<configuration>` bytes and the SecurityBlock after them.
    signed: Vec<u8>,
    signature: Option<Vec<u8>>,
    /// Each kind's exact `<kind>` bytes and its kind-signature.
    kind_signatures: Vec<(String, Vec<u8>, Option<Vec<u8>>)>,
}

impl SignedConfiguration {
    /// Reads the `<configuration>` for `overlay` (the first one when
    /// `overlay` is `None`) from a document.
    pub fn parse(text: &str, overlay: Option<&str>) -> Result<Self, ConfigError> {
        let root = parse_tree(text)?;
        let mut chosen = None;
        for (i, c) in root.children.iter().enumerate() {
            if !c.is(NS_BASE, "configuration") {
                continue;
            }
            let name = c.attr("instance-name").unwrap_or_default();
            if overlay.is_none_or(|o| o == name) {
                chosen = Some(i);
                break;
            }
        }
        let i = chosen.ok_or_else(|| ConfigError::NoConfiguration(overlay.unwrap_or("any").to_string()))?;
        let element = &root.children[i];
        let signature = root
            .children
            .get(i + 1)
            .filter(|s| s.is(NS_BASE, "signature"))
            .map(|s| decode_b64("signature", s.value()))
            .transpose()?;
        let (configuration, kind_blocks) = interpret(element, text)?;
        Ok(SignedConfiguration {
            configuration,
            signed: text.as_bytes()[element.span.clone()].to_vec(),
            signature,
            kind_signatures: kind_blocks,
        })
    }

    /// §11.1: the configuration is signed by a configuration-signer and
    /// every kind by a kind-signer, with certificates `verifier` trusts.
    pub fn verify(&self, verifier: &CertVerifier) -> Result<(), ConfigError> {
        self.verify_signed_by(verifier, &self.configuration.configuration_signers)
    }

    /// [`verify`](Self::verify), with the configuration signed by one of
    /// `configuration_signers`: for an update, §11.1 says "signed by one of
    /// the configuration-signer elements from the previous extant
    /// configuration", not by one the new document names itself.
    pub fn verify_signed_by(
        &self,
        verifier: &CertVerifier,
        configuration_signers: &[NodeId],
    ) -> Result<(), ConfigError> {
        let signature = self.signature.as_ref().ok_or(ConfigError::Unsigned)?;
        let signer = verify_blob(verifier, &self.signed, signature).map_err(ConfigError::BadSignature)?;
        if !signer.iter().any(|n| configuration_signers.contains(n)) {
            return Err(ConfigError::NotAConfigurationSigner(
                signer.first().map(|n| n.to_hex()).unwrap_or_default(),
            ));
        }
        for (name, kind, sig) in &self.kind_signatures {
            let ok = sig
                .as_ref()
                .and_then(|s| verify_blob(verifier, kind, s).ok())
                .is_some_and(|ids| ids.iter().any(|n| self.configuration.kind_signers.contains(n)));
            if !ok {
                return Err(ConfigError::UnsignedKind(name.clone()));
            }
        }
        Ok(())
    }
}

impl SignedConfiguration {
    /// The Node-IDs that signed each Kind (of those whose signature
    /// verifies), to tell a conflicting kind update (§6.5.4.2).
    pub fn kind_signers(&self, verifier: &CertVerifier) -> Vec<(KindDefinition, Vec<NodeId>)> {
        self.kind_signatures
            .iter()
            .zip(&self.configuration.kinds)
            .map(|((_, kind, sig), def)| {
                let signers = sig
                    .as_ref()
                    .and_then(|s| verify_blob(verifier, kind, s).ok())
                    .unwrap_or_default();
                (def.clone(), signers)
            })
            .collect()
    }
}

/// One `<kind-block>` as a ConfigUpdate of type kind carries it (§6.5.4.1:
/// UTF-8, default namespace config-base): its Kind and the Node-IDs whose
/// signature over the `<kind>` element verifies with `verifier`.
pub fn read_kind_block(block: &[u8], verifier: &CertVerifier) -> Result<(KindDefinition, Vec<NodeId>), ConfigError> {
    let block = std::str::from_utf8(block).map_err(|_| ConfigError::Xml("the kind block is not UTF-8".into()))?;
    let text = format!("<overlay xmlns=\"{NS_BASE}\">{block}</overlay>");
    let root = parse_tree(&text)?;
    let [kind_block] = root.children.as_slice() else {
        return Err(invalid("kind-block", "expected exactly one <kind-block>"));
    };
    if !kind_block.is(NS_BASE, "kind-block") {
        return Err(invalid("kind-block", "expected a <kind-block>"));
    }
    let kind = kind_block
        .children
        .iter()
        .find(|k| k.is(NS_BASE, "kind"))
        .ok_or_else(|| invalid("kind-block", "no <kind>"))?;
    let signature = kind_block
        .children
        .iter()
        .find(|k| k.is(NS_BASE, "kind-signature"))
        .ok_or_else(|| invalid("kind-block", "no <kind-signature>"))?;
    let signature = decode_b64("kind-signature", signature.value())?;
    let signers =
        verify_blob(verifier, &text.as_bytes()[kind.span.clone()], &signature).map_err(ConfigError::BadSignature)?;
    Ok((kind_definition(kind)?, signers))
}

/// A `<kind-block>` for `kind`, signed by `signer`: what a ConfigUpdate of
/// type kind carries.
pub fn kind_block(kind: &KindDefinition, signer: &CertSecurity) -> String {
    let kind = kind_xml(kind);
    format!(
        "<kind-block>{kind}<kind-signature>{}</kind-signature></kind-block>",
        sign_blob(signer, kind.as_bytes())
    )
}

fn verify_blob(verifier: &CertVerifier, blob: &[u8], block: &[u8]) -> Result<Vec<NodeId>, String> {
    let ctx = DecodeContext::default();
    let block = SecurityBlock::from_bytes(block, &ctx).map_err(|e| e.to_string())?;
    verifier
        .verify(blob, &block.signature, &block.certificates)
        .map(|c| c.node_ids)
        .map_err(|e| e.to_string())
}

fn decode_b64(element: &str, text: &str) -> Result<Vec<u8>, ConfigError> {
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    base64::engine::general_purpose::STANDARD
        .decode(compact)
        .map_err(|e| invalid(element, format!("not base64: {e}")))
}

fn number<T: std::str::FromStr>(el: &Element) -> Result<T, ConfigError> {
    el.value()
        .parse()
        .map_err(|_| invalid(&el.name, format!("{:?} is not a valid number here", el.value())))
}

fn boolean(el: &Element) -> Result<bool, ConfigError> {
    match el.value() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        other => Err(invalid(&el.name, format!("{other:?} is not a boolean"))),
    }
}

fn node_id(el: &Element, len: usize) -> Result<NodeId, ConfigError> {
    unhex(el.value())
        .filter(|b| b.len() == len)
        .and_then(|b| NodeId::from_slice(&b).ok())
        .ok_or_else(|| invalid(&el.name, format!("{:?} is not a {len}-byte Node-ID in hex", el.value())))
}

fn address(el: &Element) -> Result<SocketAddr, ConfigError> {
    let ip: std::net::IpAddr = el
        .attr("address")
        .unwrap_or_default()
        .parse()
        .map_err(|_| invalid(&el.name, "address is not an IP address"))?;
    let port = match el.attr("port") {
        Some(p) => p.parse().map_err(|_| invalid(&el.name, "port is not a port number"))?,
        None => DEFAULT_PORT,
    };
    Ok(SocketAddr::new(ip, port))
}

/// The overlay's proxy peers (decision 0036): the peers that send
/// requests for other SIP domains out, its users' included, and take
/// requests from those domains in, for the users `outsiders` names. The
/// domain they serve is the overlay's (RFC 7904 §3: the AOR's domain is
/// the overlay instance name), the name its DNS records publish.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyPeers {
    /// In order of preference: each other peer tries them in turn.
    pub peers: Vec<NodeId>,
    pub outsiders: sip::proxy::Outsiders,
}

/// `<p2psip:proxy-peers outsiders="all|none|USER,…">` with one
/// `<p2psip:proxy-peer>NODE-ID</p2psip:proxy-peer>` per proxy peer.
fn proxy_peers(el: &Element, len: usize) -> Result<ProxyPeers, ConfigError> {
    let outsiders = match el.attr("outsiders") {
        Some(text) => {
            sip::proxy::Outsiders::parse(text).map_err(|why| invalid(&el.name, format!("outsiders: {why}")))?
        }
        None => sip::proxy::Outsiders::Nobody,
    };
    let mut peers = Vec::new();
    for p in el.children.iter().filter(|p| p.is(NS_EXT, "proxy-peer")) {
        let id = node_id(p, len)?;
        if !peers.contains(&id) {
            peers.push(id);
        }
    }
    if peers.is_empty() {
        return Err(invalid(&el.name, "lists no <p2psip:proxy-peer>"));
    }
    Ok(ProxyPeers { peers, outsiders })
}

/// `<p2psip:storage-quota per-user per-node total>`, in bytes; an
/// attribute left out keeps its default.
fn storage_quota(el: &Element) -> Result<StorageQuota, ConfigError> {
    let mut q = StorageQuota::DEFAULT;
    for (name, field) in [
        ("per-user", &mut q.per_user_bytes),
        ("per-node", &mut q.per_node_bytes),
        ("total", &mut q.total_bytes),
    ] {
        if let Some(v) = el.attr(name) {
            *field = v
                .parse()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid(&el.name, format!("{name}={v:?} is not a number of bytes above 0")))?;
        }
    }
    Ok(q)
}

type KindSignatures = Vec<(String, Vec<u8>, Option<Vec<u8>>)>;

fn interpret(el: &Element, text: &str) -> Result<(Configuration, KindSignatures), ConfigError> {
    let name = el
        .attr("instance-name")
        .ok_or_else(|| invalid("configuration", "instance-name is missing"))?;
    let mut c = Configuration::new(name);
    c.kinds.clear();
    c.overlay_link_protocols.clear();
    c.no_ice = false;
    // §11.1: "If this value is not present, the default is 5000."
    c.max_message_size = DecodeContext::DEFAULT_MAX_MESSAGE_SIZE as u32;
    if let Some(s) = el.attr("sequence") {
        c.sequence = s
            .parse()
            .map_err(|_| invalid("configuration", "sequence is not a number"))?;
    }
    c.expiration = el.attr("expiration").map(str::to_string);
    // node-id-length first: Node-ID elements depend on it.
    if let Some(n) = el.children.iter().find(|e| e.is(NS_BASE, "node-id-length")) {
        c.node_id_length = number(n)?;
        if !(16..=20).contains(&c.node_id_length) {
            return Err(invalid("node-id-length", "must be between 16 and 20"));
        }
    }
    // §11.1: a node that lacks a mandatory extension must not go on.
    for m in el.children.iter().filter(|e| e.is(NS_BASE, "mandatory-extension")) {
        if m.value() != NS_EXT {
            return Err(invalid(
                "mandatory-extension",
                format!("{} is not supported", m.value()),
            ));
        }
    }
    let len = c.node_id_length;
    let mut kinds = Vec::new();
    for e in &el.children {
        match (e.ns.as_deref(), e.name.as_str()) {
            (Some(NS_BASE), "topology-plugin") => c.topology_plugin = e.value().to_string(),
            (Some(NS_BASE), "root-cert") => c.root_certs.push(decode_b64("root-cert", e.value())?.into()),
            (Some(NS_BASE), "enrollment-server") => c.enrollment_servers.push(e.value().to_string()),
            (Some(NS_BASE), "bootstrap-node") => c.bootstrap_nodes.push(address(e)?),
            (Some(NS_BASE), "clients-permitted") => c.clients_permitted = boolean(e)?,
            (Some(NS_BASE), "no-ice") => c.no_ice = boolean(e)?,
            (Some(NS_BASE), "turn-density") => {
                c.turn_density = number(e)?;
                if c.turn_density > MAX_TURN_DENSITY {
                    return Err(invalid(
                        &e.name,
                        format!("at most {MAX_TURN_DENSITY} (TURN-SERVICE's NODE-MULTIPLE maximum, RFC 6940 §9)"),
                    ));
                }
            }
            (Some(NS_BASE), "max-message-size") => c.max_message_size = number(e)?,
            (Some(NS_BASE), "initial-ttl") => c.initial_ttl = number(e)?,
            (Some(NS_BASE), "overlay-reliability-timer") => {
                c.reliability_timer_ms = number(e)?;
                if c.reliability_timer_ms < 200 {
                    return Err(invalid(&e.name, "must be at least 200 ms"));
                }
            }
            (Some(NS_BASE), "overlay-link-protocol") => c.overlay_link_protocols.push(e.value().to_string()),
            (Some(NS_BASE), "configuration-signer") => c.configuration_signers.push(node_id(e, len)?),
            (Some(NS_BASE), "kind-signer") => c.kind_signers.push(node_id(e, len)?),
            (Some(NS_BASE), "bad-node") => c.bad_nodes.push(node_id(e, len)?),
            (Some(NS_BASE), "mandatory-extension") => c.mandatory_extensions.push(e.value().to_string()),
            (Some(NS_CHORD), "chord-update-interval") => c.chord_update_interval_s = number(e)?,
            (Some(NS_CHORD), "chord-ping-interval") => c.chord_ping_interval_s = number(e)?,
            (Some(NS_CHORD), "chord-reactive") => c.chord_reactive = boolean(e)?,
            (Some(NS_EXT), "multicast-bootstrap") => c.multicast_bootstrap = Some(address(e)?),
            (Some(NS_EXT), "storage-quota") => c.storage_quota = storage_quota(e)?,
            (Some(NS_EXT), "proxy-peers") => c.proxy_peers = proxy_peers(e, len)?,
            (Some(NS_BASE), "required-kinds") => {
                for block in e.children.iter().filter(|b| b.is(NS_BASE, "kind-block")) {
                    let kind = block
                        .children
                        .iter()
                        .find(|k| k.is(NS_BASE, "kind"))
                        .ok_or_else(|| invalid("kind-block", "no <kind>"))?;
                    let signature = block
                        .children
                        .iter()
                        .find(|k| k.is(NS_BASE, "kind-signature"))
                        .map(|s| decode_b64("kind-signature", s.value()))
                        .transpose()?;
                    let def = kind_definition(kind)?;
                    kinds.push((def.name.clone(), text.as_bytes()[kind.span.clone()].to_vec(), signature));
                    c.kinds.push(def);
                }
            }
            _ => {}
        }
    }
    if c.overlay_link_protocols.is_empty() {
        c.overlay_link_protocols.push("TLS".into());
    }
    if c.topology_plugin != "CHORD-RELOAD" {
        return Err(invalid(
            "topology-plugin",
            format!("{} is not supported", c.topology_plugin),
        ));
    }
    Ok((c, kinds))
}

fn kind_definition(kind: &Element) -> Result<KindDefinition, ConfigError> {
    let child = |name: &str| kind.children.iter().find(|e| e.is(NS_BASE, name));
    let need = |name: &str| child(name).ok_or_else(|| invalid("kind", format!("<{name}> is missing")));
    let (id, name) = match (kind.attr("name"), kind.attr("id")) {
        (Some(n), _) => (
            registered_kind(n).ok_or_else(|| invalid("kind", format!("{n} is not a registered Kind name")))?,
            n.to_string(),
        ),
        (None, Some(i)) => {
            let id: u32 = i.parse().map_err(|_| invalid("kind", "id is not a number"))?;
            (id, format!("kind-{id}"))
        }
        (None, None) => return Err(invalid("kind", "needs a name or an id")),
    };
    let data_model = match need("data-model")?.value() {
        "SINGLE" => DataModel::SingleValue,
        "ARRAY" => DataModel::Array,
        "DICTIONARY" => DataModel::Dictionary,
        other => return Err(invalid("data-model", format!("{other} is not supported"))),
    };
    let access = match need("access-control")?.value() {
        "USER-MATCH" => AccessPolicy::UserMatch,
        "NODE-MATCH" => AccessPolicy::NodeMatch,
        "USER-NODE-MATCH" => AccessPolicy::UserNodeMatch,
        "NODE-MULTIPLE" => AccessPolicy::NodeMultiple {
            max: number(need("max-node-multiple")?)?,
        },
        other => return Err(invalid("access-control", format!("{other} is not supported"))),
    };
    Ok(KindDefinition {
        id,
        name,
        data_model,
        access,
        max_count: number(need("max-count")?)?,
        max_size: number(need("max-size")?)?,
    })
}

/// The time RFC 3339 text names (the `expiration` attribute).
pub fn parse_rfc3339(text: &str) -> Option<SystemTime> {
    let t = time::OffsetDateTime::parse(text.trim(), &time::format_description::well_known::Rfc3339).ok()?;
    let secs = u64::try_from(t.unix_timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

/// RFC 3339 UTC text of a time.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default().as_secs();
    let dt = time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    dt.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;
