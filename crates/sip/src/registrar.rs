//! The registrar of the phones attached to one peer — RFC 3261 §10.3.
//!
//! It authenticates REGISTER with HTTP Digest against the users enrolled
//! into the peer, keeps their contact bindings, and tells the caller when
//! the user's SIP-REGISTRATION in the overlay must be stored again (RFC
//! 7904 §3): its lifetime is that of the longest-lived binding, so a
//! registration nobody refreshes vanishes from the overlay by itself.

use crate::digest::{challenges, Algorithm, Credentials, Ha1, NonceState, Nonces, DEFAULT_ALGORITHMS};
use crate::headers::{Contact, NameAddr};
use crate::message::SipMessage;
use crate::nonce_counts::{parse_nc, Count, NonceCounts};
use crate::uri::Uri;
use std::collections::HashMap;
use std::net::SocketAddr;

/// Expiry when neither the Contact nor the request says (§10.2.1.1).
pub const DEFAULT_EXPIRES_S: u32 = 3600;
/// Shortest registration accepted; shorter ones get 423 with this.
pub const MIN_EXPIRES_S: u32 = 60;
/// Longest registration granted; longer requests are shortened.
pub const MAX_EXPIRES_S: u32 = 7200;
/// Most contacts one user may register at one peer.
pub const MAX_CONTACTS: usize = 16;

/// How a phone's messages reach this peer: the flow a request to one of
/// its contacts is sent back on (RFC 3261 §18.2.1 `received`/`rport`, the
/// only way through a NAT in front of the phone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub transport: Transport,
    pub remote: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP: between peers, the AppAttach connection (RFC 6940
    /// §6.5.2, application 5061), authenticated by both nodes'
    /// certificates.
    Tls,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            Transport::Tls => "TLS",
        }
    }

    pub fn reliable(self) -> bool {
        matches!(self, Transport::Tcp | Transport::Tls)
    }
}

/// One contact of a user (§10.3 step 7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact value as the phone wrote it, parameters included.
    pub contact: NameAddr,
    pub expires_at_ms: u64,
    pub call_id: String,
    pub cseq: u32,
    pub flow: Flow,
}

impl Binding {
    pub fn remaining_s(&self, now_ms: u64) -> u32 {
        (self.expires_at_ms.saturating_sub(now_ms).div_ceil(1000)).min(u64::from(u32::MAX)) as u32
    }
}

/// Whether a binding's phone sits behind a NAT: its Contact is not the
/// address its REGISTER came from (a host name counts as not: nothing
/// tells).
pub fn behind_nat(binding: &Binding) -> bool {
    let uri = &binding.contact.uri;
    let default_port = if uri.scheme == "sips" { 5061 } else { 5060 };
    let named = crate::proxy::host_ip(&uri.host).map(|ip| SocketAddr::new(ip, uri.port.unwrap_or(default_port)));
    named.is_some_and(|address| address != binding.flow.remote)
}

/// Which challenge a request gets: a registrar's 401 or a proxy's 407.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuthScheme {
    Registrar,
    Proxy,
}

/// What the registrar decided about a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Send this answer; nothing changes in the overlay.
    Answer(SipMessage),
    /// Credentials naming `user` did not verify: send `answer` (403).
    AuthFailed { user: String, answer: SipMessage },
    /// The user's bindings changed: store the user's SIP-REGISTRATION with
    /// this lifetime (0: remove it), then send `answer`. If the store
    /// fails, answer with [`store_failed`] instead.
    Publish {
        user: String,
        lifetime_s: u32,
        answer: SipMessage,
    },
}

/// A request not let through: the answer to send and, when digest
/// credentials were given that do not verify, the user they named (for
/// the log and the authentication-failure count).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub answer: SipMessage,
    pub wrong_credentials: Option<String>,
}

impl From<SipMessage> for Refusal {
    fn from(answer: SipMessage) -> Self {
        Refusal {
            answer,
            wrong_credentials: None,
        }
    }
}

/// The answer to a REGISTER whose overlay store failed.
pub fn store_failed(request: &SipMessage, why: &str) -> SipMessage {
    let mut r = SipMessage::response_to(request, 500, "Registration Not Stored In The Overlay", None);
    r.push("Warning", &format!("399 p2psip \"{}\"", why.replace('"', "'")));
    r.push("Retry-After", "5");
    r
}

/// A fixed answer with a reason phrase.
pub fn answer(request: &SipMessage, code: u16, reason: &str) -> SipMessage {
    SipMessage::response_to(request, code, reason, None)
}

pub struct Registrar {
    /// The overlay's domain: AORs are `sip:user@domain`, and it is the
    /// digest realm.
    domain: String,
    users: HashMap<String, Ha1>,
    nonces: Nonces,
    /// Nonce counts used, against replayed credentials.
    counts: NonceCounts,
    /// The digest algorithms challenged with, preferred first; a response
    /// with any other is challenged again.
    algorithms: Vec<Algorithm>,
    bindings: HashMap<String, Vec<Binding>>,
    /// Registrations handed to the overlay ([`Registered::Publish`]) and
    /// not yet [`published`](Registrar::published).
    publishing: usize,
    max_publishing: usize,
}

/// Registrations the overlay may be storing at once before new REGISTERs
/// are turned away with 503 (issue 36 §6): each is a signed Store and its
/// replicas, and a flood must not queue them without limit.
pub const MAX_PUBLISHING: usize = 2_048;
/// Seconds a 503 for overload asks the phone to wait (RFC 3261 §21.5.4).
pub const RETRY_AFTER_S: u32 = 5;

impl Registrar {
    pub fn new(domain: &str, users: HashMap<String, Ha1>, nonce_secret: [u8; 32]) -> Self {
        Registrar {
            domain: domain.to_ascii_lowercase(),
            users,
            nonces: Nonces::new(nonce_secret),
            counts: NonceCounts::default(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            bindings: HashMap::new(),
            publishing: 0,
            max_publishing: MAX_PUBLISHING,
        }
    }

    /// Challenges with `algorithms` (preferred first, each once) instead
    /// of [`DEFAULT_ALGORITHMS`]; an empty list keeps the default.
    pub fn with_digest_algorithms(mut self, algorithms: &[Algorithm]) -> Self {
        if !algorithms.is_empty() {
            self.algorithms.clear();
            for a in algorithms {
                if !self.algorithms.contains(a) {
                    self.algorithms.push(*a);
                }
            }
        }
        self
    }

    /// At most `max` registrations stored in the overlay at once, not
    /// [`MAX_PUBLISHING`].
    pub fn with_max_publishing(mut self, max: usize) -> Self {
        self.max_publishing = max;
        self
    }

    /// The overlay has answered (either way) a store this registrar asked
    /// for with [`Registered::Publish`].
    pub fn published(&mut self) {
        self.publishing = self.publishing.saturating_sub(1);
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    /// Replaces the users this registrar serves (accounts added or removed
    /// while the peer runs). A removed user's bindings go with it, so its
    /// phones are no longer reached; the users removed are returned, in
    /// name order, for the caller to withdraw their registrations from the
    /// overlay.
    pub fn set_users(&mut self, users: HashMap<String, Ha1>) -> Vec<String> {
        let mut removed: Vec<String> = self.users.keys().filter(|u| !users.contains_key(*u)).cloned().collect();
        removed.sort();
        for user in &removed {
            self.bindings.remove(user);
        }
        self.users = users;
        removed
    }

    /// The users served, in name order.
    pub fn users(&self) -> Vec<&str> {
        let mut users: Vec<&str> = self.users.keys().map(String::as_str).collect();
        users.sort_unstable();
        users
    }

    pub fn serves(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Live bindings of a user, longest-lived first.
    pub fn contacts(&self, user: &str, now_ms: u64) -> Vec<&Binding> {
        let mut out: Vec<_> = self
            .bindings
            .get(user)
            .into_iter()
            .flatten()
            .filter(|b| b.expires_at_ms > now_ms)
            .collect();
        out.sort_by_key(|b| std::cmp::Reverse(b.expires_at_ms));
        out
    }

    /// Drops expired bindings (§10.3: a binding lives until it expires).
    /// The overlay copy expires by its own lifetime; nothing is stored.
    /// Returns the users left with no binding at all.
    pub fn expire(&mut self, now_ms: u64) -> Vec<String> {
        let mut gone = Vec::new();
        self.bindings.retain(|user, list| {
            list.retain(|b| b.expires_at_ms > now_ms);
            if list.is_empty() {
                gone.push(user.clone());
            }
            !list.is_empty()
        });
        gone.sort();
        gone
    }

    /// The UDP flows of live bindings whose phone is behind a NAT (its
    /// Contact names an address other than the one its REGISTER came
    /// from, which `received`/`rport` recorded, RFC 3581), each once, with
    /// a Contact URI registered over it: what
    /// [`Proxy::keep_nat_open`](crate::proxy::Proxy::keep_nat_open) pings.
    pub fn flows_behind_nat(&self, now_ms: u64) -> Vec<(Flow, String)> {
        let mut flows: Vec<(Flow, String)> = Vec::new();
        let live = self.bindings.values().flatten().filter(|b| b.expires_at_ms > now_ms);
        for b in live.filter(|b| b.flow.transport == Transport::Udp && behind_nat(b)) {
            if !flows.iter().any(|(f, _)| *f == b.flow) {
                flows.push((b.flow, b.contact.uri.to_string()));
            }
        }
        flows.sort_by_key(|(f, _)| f.remote);
        flows
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.values().map(Vec::len).sum()
    }

    /// Whether `uri` names a user of this overlay: `Some(user)` when its
    /// host is the overlay's domain.
    pub fn user_of<'a>(&self, uri: &'a Uri) -> Option<&'a str> {
        (uri.host.eq_ignore_ascii_case(&self.domain))
            .then_some(uri.user.as_deref())
            .flatten()
    }

    fn challenge(&mut self, request: &SipMessage, now_ms: u64, stale: bool, scheme: AuthScheme) -> SipMessage {
        let (code, reason, header) = match scheme {
            AuthScheme::Registrar => (401, "Unauthorized", "WWW-Authenticate"),
            AuthScheme::Proxy => (407, "Proxy Authentication Required", "Proxy-Authenticate"),
        };
        let mut r = SipMessage::response_to(request, code, reason, None);
        let nonce = self.nonces.issue(now_ms, &self.domain);
        for c in challenges(&self.domain, &nonce, stale, &self.algorithms) {
            r.push(header, &c);
        }
        r
    }

    /// RFC 3261 §22.3: the user whose digest credentials authorize this
    /// request, or the answer to send: a challenge when there are none,
    /// the nonce is stale or unknown, or they were used before (a replay:
    /// RFC 7616 §3.4.6, each nonce count once); 400 when they were made
    /// for another Request-URI (RFC 3261 §22.4, RFC 7616 §3.4.6); 403 when
    /// they are wrong.
    fn authenticate(&mut self, now_ms: u64, request: &SipMessage, scheme: AuthScheme) -> Result<String, Refusal> {
        let header = match scheme {
            AuthScheme::Registrar => "Authorization",
            AuthScheme::Proxy => "Proxy-Authorization",
        };
        let Some(credentials) = request
            .headers
            .iter()
            .filter(|h| h.is(header))
            .filter_map(|h| Credentials::parse(&h.value()))
            .find(|c| {
                c.realm.eq_ignore_ascii_case(&self.domain)
                    && c.algorithm().is_some_and(|a| self.algorithms.contains(&a))
            })
        else {
            return Err(self.challenge(request, now_ms, false, scheme).into());
        };
        let issued_ms = match self.nonces.check(&credentials.nonce, now_ms, &self.domain) {
            NonceState::Fresh { issued_ms } => issued_ms,
            NonceState::Stale => return Err(self.challenge(request, now_ms, true, scheme).into()),
            NonceState::Invalid => return Err(self.challenge(request, now_ms, false, scheme).into()),
        };
        if !digest_uri_fits(&credentials.uri, request.request_uri().unwrap_or_default()) {
            return Err(answer(request, 400, "Digest URI Does Not Match The Request-URI").into());
        }
        let method = request.method().unwrap_or_default();
        let known = self.users.get(&credentials.username);
        if !known.is_some_and(|ha1| credentials.verify(method, ha1)) {
            return Err(Refusal {
                answer: answer(request, 403, "Forbidden"),
                wrong_credentials: Some(credentials.username),
            });
        }
        // The response covers `nc` only with qop=auth; without it a nonce
        // works once, whatever `nc` says.
        let with_qop = credentials
            .qop
            .as_deref()
            .is_some_and(|q| q.eq_ignore_ascii_case("auth"));
        let nc = match credentials.nc.as_deref().filter(|_| with_qop).map(parse_nc) {
            Some(None) => return Err(answer(request, 400, "Bad Nonce Count").into()),
            Some(Some(nc)) => Some(nc),
            None => None,
        };
        if self.counts.use_count(now_ms, &credentials.nonce, issued_ms, nc) == Count::Replayed {
            return Err(self.challenge(request, now_ms, true, scheme).into());
        }
        Ok(credentials.username)
    }

    /// Who a phone's `request` comes from, if it may go through this peer
    /// (RFC 3261 §16.3 leaves the policy to the proxy): the user its From
    /// names, when a phone of that user registered over `flow` (a phone
    /// with several lines registers each over one flow); otherwise the
    /// user whose digest credentials it carries, or the answer to send
    /// (407, 400 or 403). The peer is no open relay into the overlay.
    pub fn authorize(&mut self, now_ms: u64, request: &SipMessage, flow: Flow) -> Result<String, Refusal> {
        let from = request
            .header("From")
            .and_then(|f| NameAddr::parse(&f).ok())
            .filter(|n| n.uri.host.eq_ignore_ascii_case(&self.domain))
            .and_then(|n| n.uri.user);
        if let Some(user) = from.filter(|u| self.registered_over(u, flow, now_ms)) {
            return Ok(user);
        }
        self.authenticate(now_ms, request, AuthScheme::Proxy)
    }

    /// Whether `user` has a live binding registered over `flow`.
    fn registered_over(&self, user: &str, flow: Flow, now_ms: u64) -> bool {
        self.bindings
            .get(user)
            .is_some_and(|list| list.iter().any(|b| b.flow == flow && b.expires_at_ms > now_ms))
    }

    /// The user with a live binding registered over `flow`.
    pub fn user_on(&self, flow: Flow, now_ms: u64) -> Option<&str> {
        self.bindings
            .iter()
            .find(|(_, list)| list.iter().any(|b| b.flow == flow && b.expires_at_ms > now_ms))
            .map(|(user, _)| user.as_str())
    }

    /// The live binding whose contact is `uri` (§19.1.4 comparison), to
    /// send a request for that contact back over the phone's own flow.
    pub fn binding_for(&self, uri: &Uri, now_ms: u64) -> Option<&Binding> {
        self.user_and_binding_for(uri, now_ms).map(|(_, b)| b)
    }

    /// [`binding_for`](Self::binding_for) with the user it belongs to.
    pub fn user_and_binding_for(&self, uri: &Uri, now_ms: u64) -> Option<(&str, &Binding)> {
        self.bindings.iter().find_map(|(user, list)| {
            list.iter()
                .find(|b| b.expires_at_ms > now_ms && same_contact(&b.contact.uri, uri))
                .map(|b| (user.as_str(), b))
        })
    }

    /// §10.3: handles one REGISTER that arrived over `flow`.
    pub fn register(&mut self, now_ms: u64, request: &SipMessage, flow: Flow) -> Registered {
        match self.try_register(now_ms, request, flow) {
            Ok(r) => r,
            Err(Refusal {
                answer,
                wrong_credentials: Some(user),
            }) => Registered::AuthFailed { user, answer },
            Err(Refusal { answer, .. }) => Registered::Answer(answer),
        }
    }

    fn try_register(&mut self, now_ms: u64, request: &SipMessage, flow: Flow) -> Result<Registered, Refusal> {
        // Overload is refused before any work (a digest check, a store).
        if self.publishing >= self.max_publishing {
            let mut busy = answer(request, 503, "Service Unavailable");
            busy.push("Retry-After", &RETRY_AFTER_S.to_string());
            return Err(busy.into());
        }
        // Step 2: no extension this registrar would need is supported.
        if let Some(required) = request.header("Require") {
            let mut r = answer(request, 420, "Bad Extension");
            r.push("Unsupported", required.trim());
            return Err(r.into());
        }
        // The To must be a SIP address of record at all (RFC 4475 §3.3.4):
        // no point in challenging for one that cannot be.
        let to = request
            .header("To")
            .and_then(|t| NameAddr::parse(&t).ok())
            .ok_or_else(|| answer(request, 400, "Bad To Header"))?;
        // Step 3: authentication.
        let username = self.authenticate(now_ms, request, AuthScheme::Registrar)?;
        // Steps 4 and 5: the To names an AOR of this overlay that the
        // authenticated user owns.
        if !to.uri.host.eq_ignore_ascii_case(&self.domain) {
            return Err(answer(request, 403, "Not This Overlay's Domain").into());
        }
        let user = to.uri.user.clone().unwrap_or_default();
        if user != username {
            return Err(answer(request, 403, "Not Your Address Of Record").into());
        }
        let call_id = request.call_id().unwrap_or_default().into_owned();
        let (cseq, _) = request.cseq().ok_or_else(|| answer(request, 400, "Bad CSeq"))?;
        let default_expires = match request.header("Expires") {
            Some(e) => e
                .trim()
                .parse::<u32>()
                .map_err(|_| answer(request, 400, "Bad Expires"))?,
            None => DEFAULT_EXPIRES_S,
        };
        let mut contacts = Vec::new();
        for text in request.list("Contact") {
            contacts.push(Contact::parse(&text).map_err(|_| answer(request, 400, "Bad Contact"))?);
        }
        if contacts.is_empty() {
            // Query: the bindings as they are.
            return Ok(Registered::Answer(self.ok(request, &user, now_ms)));
        }
        // Step 6: `*` only alone and with Expires: 0.
        if contacts.contains(&Contact::Star) {
            if contacts.len() != 1 || request.header("Expires").is_none() || default_expires != 0 {
                return Err(answer(request, 400, "Wildcard Contact Needs Expires 0").into());
            }
            let list = self.bindings.entry(user.clone()).or_default();
            if list.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) {
                return Err(answer(request, 500, "Out Of Order Request").into());
            }
            list.clear();
            return Ok(self.publish(request, &user, now_ms));
        }
        // Step 7, checked for every contact before any binding changes.
        let mut changes = Vec::new();
        for contact in contacts {
            let Contact::Address(addr) = contact else { continue };
            let expires = match addr.param("expires") {
                Some(Some(e)) => e
                    .parse::<u32>()
                    .map_err(|_| answer(request, 400, "Bad Contact Expires"))?,
                _ => default_expires,
            };
            if expires != 0 && expires < MIN_EXPIRES_S {
                let mut r = answer(request, 423, "Interval Too Brief");
                r.push("Min-Expires", &MIN_EXPIRES_S.to_string());
                return Err(r.into());
            }
            changes.push((addr, expires.min(MAX_EXPIRES_S)));
        }
        let list = self.bindings.entry(user.clone()).or_default();
        for (addr, _) in &changes {
            if list
                .iter()
                .any(|b| same_contact(&b.contact.uri, &addr.uri) && b.call_id == call_id && b.cseq >= cseq)
            {
                return Err(answer(request, 500, "Out Of Order Request").into());
            }
        }
        for (mut addr, expires) in changes {
            list.retain(|b| !same_contact(&b.contact.uri, &addr.uri));
            if expires > 0 {
                addr.params.retain(|(k, _)| !k.eq_ignore_ascii_case("expires"));
                list.push(Binding {
                    contact: addr,
                    expires_at_ms: now_ms + u64::from(expires) * 1000,
                    call_id: call_id.clone(),
                    cseq,
                    flow,
                });
            }
        }
        if list.len() > MAX_CONTACTS {
            list.sort_by_key(|b| std::cmp::Reverse(b.expires_at_ms));
            list.truncate(MAX_CONTACTS);
        }
        Ok(self.publish(request, &user, now_ms))
    }

    fn publish(&mut self, request: &SipMessage, user: &str, now_ms: u64) -> Registered {
        let lifetime_s = self.contacts(user, now_ms).first().map_or(0, |b| b.remaining_s(now_ms));
        if lifetime_s == 0 {
            self.bindings.remove(user);
        }
        self.publishing += 1;
        Registered::Publish {
            user: user.to_string(),
            lifetime_s,
            answer: self.ok(request, user, now_ms),
        }
    }

    /// §10.3 step 8: 200 OK listing every current binding with its
    /// remaining time.
    fn ok(&self, request: &SipMessage, user: &str, now_ms: u64) -> SipMessage {
        let mut r = SipMessage::response_to(request, 200, "OK", None);
        for b in self.contacts(user, now_ms) {
            r.push("Contact", &format!("{};expires={}", b.contact, b.remaining_s(now_ms)));
        }
        r
    }
}

/// RFC 3261 §19.1.4, as far as a registrar needs it: scheme, user, host
/// (any case), port and transport.
/// Whether credentials made for `digest_uri` may authorize a request
/// for `request_uri` (RFC 3261 §22.4, RFC 7616 §3.4.6): the same URI
/// (same text, or equal once parsed), or a URI with no user part, which
/// names a server rather than a party. Phones differ here: most copy the
/// Request-URI; SIPp and some others name the proxy's address
/// (`sip:127.0.0.1:5060`). A credential made for one callee never calls
/// another; replays are stopped by the nonce count either way.
fn digest_uri_fits(digest_uri: &str, request_uri: &str) -> bool {
    if digest_uri == request_uri {
        return true;
    }
    // §19.1.4: user parts compare case-sensitively, hosts not.
    let party = |u: &Uri| (u.scheme.clone(), u.user.clone(), u.host.to_ascii_lowercase(), u.port);
    match Uri::parse(digest_uri) {
        Ok(d) => d.user.is_none() || Uri::parse(request_uri).is_ok_and(|r| party(&r) == party(&d)),
        Err(_) => false,
    }
}

fn same_contact(a: &Uri, b: &Uri) -> bool {
    a.scheme == b.scheme
        && a.user == b.user
        && a.host.eq_ignore_ascii_case(&b.host)
        && a.port == b.port
        && a.transport() == b.transport()
}

#[cfg(test)]
mod tests;
