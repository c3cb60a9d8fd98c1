//! The long-term credential mechanism on the server's side (RFC 8489
//! §9.2.4), with stateless nonces: when one was issued, and an HMAC of
//! that and the client's address under this server's secret.

use super::{TurnServer, NONCE_LIFETIME_MS};
use crate::stun::message::{attribute, Message};
use reload_wire::hex;
use std::net::SocketAddr;

/// The outcome of checking a request's credentials.
pub(super) enum Auth {
    Ok {
        username: String,
        key: [u8; 16],
    },
    /// Answer with this error (401 and 438 with a fresh nonce).
    Refused(u16, &'static str),
}

impl TurnServer {
    /// RFC 8489 §9.2.4, in its order: integrity present, the other
    /// credentials present (400), realm and nonce (438 when stale), user,
    /// integrity right.
    pub(super) fn authenticate(&mut self, now: u64, client: SocketAddr, message: &Message<'_>) -> Auth {
        if message.attribute(attribute::MESSAGE_INTEGRITY).is_none() {
            return Auth::Refused(401, "Unauthenticated");
        }
        let (Some(username), Some(realm), Some(nonce)) = (
            message.attribute(attribute::USERNAME),
            message.attribute(attribute::REALM),
            message.attribute(attribute::NONCE),
        ) else {
            return Auth::Refused(400, "Bad Request");
        };
        if realm != self.config.realm.as_bytes() {
            return Auth::Refused(401, "Unauthenticated");
        }
        if !self.nonce_valid(now, client, nonce) {
            return Auth::Refused(438, "Stale Nonce");
        }
        let Ok(username) = std::str::from_utf8(username) else {
            return Auth::Refused(401, "Unauthenticated");
        };
        let Some(key) = (self.credentials)(username) else {
            return Auth::Refused(401, "Unauthenticated");
        };
        if !message.integrity_matches(&key) {
            return Auth::Refused(401, "Unauthenticated");
        }
        Auth::Ok {
            username: username.to_string(),
            key,
        }
    }

    /// A nonce for `client`, issued at `issued`.
    pub(super) fn nonce(&self, issued: u64, client: SocketAddr) -> String {
        format!(
            "{issued:016x}{}",
            hex(&self.mac(&[&issued.to_be_bytes(), client.to_string().as_bytes()]))
        )
    }

    fn nonce_valid(&self, now: u64, client: SocketAddr, nonce: &[u8]) -> bool {
        let Some(issued) = nonce
            .get(..16)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u64::from_str_radix(h, 16).ok())
        else {
            return false;
        };
        let fresh = issued <= now && now - issued < NONCE_LIFETIME_MS;
        fresh && nonce == self.nonce(issued, client).as_bytes()
    }

    /// The first 8 bytes of HMAC-SHA1 of `parts` under this server's
    /// secret (nonces, reservation tokens).
    pub(super) fn mac(&self, parts: &[&[u8]]) -> [u8; 8] {
        use hmac::{KeyInit, Mac};
        let Ok(mut mac) = hmac::Hmac::<sha1::Sha1>::new_from_slice(&self.nonce_secret) else {
            return [0; 8];
        };
        for part in parts {
            mac.update(part);
        }
        let full: [u8; 20] = mac.finalize().into_bytes().into();
        let mut short = [0u8; 8];
        short.copy_from_slice(&full[..8]);
        short
    }
}
