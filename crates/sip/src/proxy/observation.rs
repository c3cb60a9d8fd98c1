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

/// A Call-ID for an observation: as it is up to [`MAX_NAME`]
/// characters; a longer one is cut and ends in a hash of the whole, so
/// two long Call-IDs with a common prefix stay two calls.
pub(crate) fn call_id(id: Option<&str>) -> String {
    let id = id.unwrap_or("?");
    if id.chars().count() <= MAX_NAME {
        return id.to_string();
    }
    // FNV-1a: stable across runs, which the log's readers need.
    let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let prefix: String = id.chars().take(MAX_NAME - 17).collect();
    format!("{prefix}~{hash:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_call_ids_are_cut_but_stay_apart() {
        assert_eq!(call_id(Some("abc@host")), "abc@host");
        let a = call_id(Some(&format!("{}A", "x".repeat(100))));
        let b = call_id(Some(&format!("{}B", "x".repeat(100))));
        assert_eq!(a.chars().count(), MAX_NAME);
        assert_ne!(a, b);
    }
}
