//! What the proxy tells its operator: calls starting, ringing, answered
//! and ending, and credentials that did not verify. Observations change
//! nothing; the driver turns them into log lines, metrics and the list of
//! calls in progress.

use std::net::SocketAddr;

/// The longest party name an observation carries: names come from the
/// network, and logs quote only a short prefix of them.
pub const MAX_NAME: usize = 64;

/// Something worth seeing about the calls through this peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// An INVITE outside any dialog was taken: a call through this peer
    /// begins. `from` and `to` are the parties' AORs, `user@host`, cut
    /// to [`MAX_NAME`] characters.
    CallStarted { call_id: String, from: String, to: String },
    /// The first ringing (18x) or answer (2xx) went back to the caller,
    /// `setup_ms` after the INVITE arrived: the call setup time.
    CallProgress { call_id: String, setup_ms: u64 },
    /// The INVITE's final answer went back: 2xx, the dialog is up; else
    /// the call failed with `code`.
    CallAnswered { call_id: String, code: u16 },
    /// A BYE of a dialog passed through: the call is over.
    CallEnded { call_id: String },
    /// Digest credentials naming `user` did not verify (RFC 3261 §22.3).
    AuthFailed { user: String, remote: SipAddr },
}

/// Where a message came from.
pub type SipAddr = SocketAddr;

/// A party's AOR for an observation: `user@host` of a From or To
/// header, cut to [`MAX_NAME`] characters; `?` when unreadable.
pub(crate) fn party(header: Option<&str>) -> String {
    let Some(uri) = header
        .and_then(|h| crate::headers::NameAddr::parse(h).ok())
        .map(|n| n.uri)
    else {
        return "?".into();
    };
    let name = match uri.user {
        Some(user) => format!("{user}@{}", uri.host),
        None => uri.host,
    };
    name.chars().take(MAX_NAME).collect()
}

/// A Call-ID for an observation, cut to [`MAX_NAME`] characters.
pub(crate) fn call_id(id: Option<&str>) -> String {
    id.unwrap_or("?").chars().take(MAX_NAME).collect()
}
