//! The NSS key log line of a DTLS link (`CLIENT_RANDOM <client random>
//! <master secret>`, both hex), written to `SSLKEYLOGFILE` as rustls does
//! for TLS links, so that Wireshark decrypts the overlay's DTLS links.
//!
//! rtc-dtls keeps the randoms and the master secret private; what it
//! exports is its serialised state (`State::marshal_binary`, for resuming
//! a connection), an rkyv archive of the struct mirrored here field for
//! field. A change of that struct upstream makes [`key_log_line`] return
//! `None` (rkyv checks the archive) or, at worst, a line Wireshark cannot
//! use; the DTLS link test decrypts with the line, so either is caught.

use reload_wire::hex;
use rtc_dtls::state::State;

/// rtc-dtls 0.21.1's `SerializedState` (state.rs), field for field.
#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct SerializedState {
    local_epoch: u16,
    remote_epoch: u16,
    local_random: [u8; 32],
    remote_random: [u8; 32],
    cipher_suite_id: u16,
    master_secret: Vec<u8>,
    sequence_number: u64,
    srtp_protection_profile: u16,
    peer_certificates: Vec<Vec<u8>>,
    identity_hint: Vec<u8>,
    is_client: bool,
}

/// The key log line of an association whose handshake completed.
pub fn key_log_line(state: &State) -> Option<String> {
    let bytes = state.marshal_binary().ok()?;
    let archived = rkyv::access::<ArchivedSerializedState, rkyv::rancor::Error>(&bytes).ok()?;
    // The TLS 1.2 master secret is 48 bytes (RFC 5246 §8.1).
    if archived.master_secret.len() != 48 {
        return None;
    }
    let client_random = if archived.is_client {
        &archived.local_random
    } else {
        &archived.remote_random
    };
    Some(format!(
        "CLIENT_RANDOM {} {}",
        hex(client_random),
        hex(&archived.master_secret)
    ))
}

/// Appends `line` to the file `SSLKEYLOGFILE` names, if it names one.
pub fn append_to_key_log_file(line: &str) {
    use std::io::Write;
    let Some(path) = std::env::var_os("SSLKEYLOGFILE") else {
        return;
    };
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .and_then(|mut f| writeln!(f, "{line}"));
    if let Err(e) = written {
        tracing::warn!("cannot write the DTLS key log to {}: {e}", path.to_string_lossy());
    }
}
