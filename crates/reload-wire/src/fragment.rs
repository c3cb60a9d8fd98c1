//! Fragmentation and reassembly — RFC 6940 §6.7.
//!
//! Any node may fragment; only the destination reassembles. Each fragment
//! carries a full copy of the forwarding header; `fragment` holds the
//! offset of its chunk after the header and whether it is the last one.

use crate::codec::Writer;
use crate::error::{DecodeError, EncodeError};
use crate::header::{ForwardingHeader, Fragment};
use crate::DecodeContext;
use std::collections::{BTreeMap, HashMap};

/// Each fragment MUST carry at least this much of the message body (§6.7).
pub const MIN_FRAGMENT_BODY: usize = 256;
/// Incomplete messages are dropped after the maximum request lifetime (§6.7).
pub const REASSEMBLY_TIMEOUT_MS: u64 = 15_000;

/// Splits an encoded message (or a fragment of one) into equal-sized
/// fragments of at most `max_len` bytes each (§6.7: "no larger than the
/// PMTU of the next overlay link minus 32 bytes" is the caller's choice of
/// `max_len`). Returns the message unchanged when it already fits, or when
/// the pieces could not each carry 256 bytes of body, in which case the RFC
/// leaves it to IP fragmentation.
pub fn fragment(message: &[u8], max_len: usize, ctx: &DecodeContext) -> Result<Vec<Vec<u8>>, FragmentError> {
    if message.len() <= max_len {
        return Ok(vec![message.to_vec()]);
    }
    let (header, payload) = ForwardingHeader::split(message, ctx)?;
    let header_len = message.len() - payload.len();
    let room = max_len.saturating_sub(header_len);
    if room < MIN_FRAGMENT_BODY {
        return Ok(vec![message.to_vec()]);
    }
    let chunk = payload.len().div_ceil(payload.len().div_ceil(room));
    // Equal-sized pieces; the number actually cut is derived from the chunk
    // size, so the last piece is never empty and always marked last.
    let count = payload.len().div_ceil(chunk);
    let last_piece = payload.len() - (count - 1) * chunk;
    if last_piece < MIN_FRAGMENT_BODY {
        return Ok(vec![message.to_vec()]);
    }
    let base = header.fragment.offset() as usize;
    if base + payload.len() > Fragment::MAX_OFFSET as usize {
        return Err(FragmentError::OffsetOverflow);
    }
    let mut out = Vec::with_capacity(count);
    for (i, piece) in payload.chunks(chunk).enumerate() {
        let last = header.fragment.is_last() && i == count - 1;
        let mut h = header.clone();
        h.fragment = Fragment::new(last, (base + i * chunk) as u32);
        let mut w = Writer::with_capacity(header_len + piece.len());
        h.encode_with_payload(&mut w, piece);
        out.push(w.finish()?);
    }
    Ok(out)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FragmentError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error("fragment offset beyond the 24-bit field")]
    OffsetOverflow,
    /// §6.7: every fragment but the last carries at least 256 body bytes.
    #[error("fragment with {0} body bytes; non-final fragments carry at least 256")]
    ShortFragment(usize),
}

/// Bytes charged per stored piece beyond the frame itself (map entry,
/// vector header), so that many tiny fragments cannot exceed the budget.
const PIECE_OVERHEAD: usize = 64;

struct Partial {
    started_ms: u64,
    header: ForwardingHeader,
    header_len: usize,
    /// offset → (chunk, bytes charged for it)
    pieces: BTreeMap<u32, (Vec<u8>, usize)>,
    total: Option<usize>,
    charged: usize,
}

/// Holds fragments until their message is whole (§6.7). Memory is bounded:
/// every stored fragment is charged its whole size (header copy included)
/// plus a fixed overhead against `max_buffered`; when a fragment would
/// exceed it, its whole message is dropped (§6.7: "MUST drop the message").
/// No message beyond max-message-size is accepted, non-final fragments must
/// carry the 256 body bytes §6.7 requires, and nothing is kept past
/// [`REASSEMBLY_TIMEOUT_MS`].
pub struct Reassembler {
    partial: HashMap<u64, Partial>,
    buffered: usize,
    max_buffered: usize,
}

/// What became of a fragment handed to the [`Reassembler`].
#[derive(Debug, PartialEq, Eq)]
pub enum Reassembly {
    /// A whole message, with its fragment field reset to unfragmented.
    Complete(Vec<u8>),
    /// Kept; more fragments are needed.
    Pending,
    /// The buffer is full: this fragment and its whole message were dropped.
    Dropped,
}

impl Reassembler {
    pub fn new(max_buffered: usize) -> Self {
        Reassembler {
            partial: HashMap::new(),
            buffered: 0,
            max_buffered,
        }
    }

    /// Number of messages being reassembled.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    /// Bytes currently charged against the buffer limit.
    pub fn buffered(&self) -> usize {
        self.buffered
    }

    /// Takes one received message or fragment. Unfragmented messages pass
    /// straight through.
    pub fn push(&mut self, now_ms: u64, frame: &[u8], ctx: &DecodeContext) -> Result<Reassembly, FragmentError> {
        let (header, payload) = ForwardingHeader::split(frame, ctx)?;
        if header.fragment.is_unfragmented() {
            return Ok(Reassembly::Complete(frame.to_vec()));
        }
        self.expire(now_ms);
        let header_len = frame.len() - payload.len();
        let offset = header.fragment.offset();
        let end = offset as usize + payload.len();
        if header_len + end > ctx.max_message_size {
            return Err(DecodeError::MessageTooLarge {
                length: header_len + end,
                max: ctx.max_message_size,
            }
            .into());
        }
        let last = header.fragment.is_last();
        if payload.is_empty() || (!last && payload.len() < MIN_FRAGMENT_BODY) {
            return Err(FragmentError::ShortFragment(payload.len()));
        }
        let id = header.transaction_id;
        let cost = frame.len() + PIECE_OVERHEAD;
        if self.buffered + cost > self.max_buffered {
            if let Some(p) = self.partial.remove(&id) {
                self.buffered -= p.charged;
            }
            return Ok(Reassembly::Dropped);
        }
        let p = self.partial.entry(id).or_insert_with(|| Partial {
            started_ms: now_ms,
            header,
            header_len,
            pieces: BTreeMap::new(),
            total: None,
            charged: 0,
        });
        if last {
            p.total = Some(end);
        }
        if let Some((_, old_cost)) = p.pieces.insert(offset, (payload.to_vec(), cost)) {
            p.charged -= old_cost;
            self.buffered -= old_cost;
        }
        p.charged += cost;
        self.buffered += cost;
        let Some(total) = p.total else {
            return Ok(Reassembly::Pending);
        };
        let mut covered = 0usize;
        for (&o, (piece, _)) in &p.pieces {
            if covered >= total {
                break;
            }
            if o as usize > covered {
                return Ok(Reassembly::Pending);
            }
            covered = covered.max(o as usize + piece.len());
        }
        if covered < total {
            return Ok(Reassembly::Pending);
        }
        let p = self.partial.remove(&id).expect("entry exists");
        self.buffered -= p.charged;
        let mut body = vec![0u8; total];
        // Pieces reaching past the last fragment's end (inconsistent input)
        // are cut at `total`.
        for (o, (piece, _)) in p.pieces {
            let o = o as usize;
            if o >= total {
                continue;
            }
            let n = piece.len().min(total - o);
            body[o..o + n].copy_from_slice(&piece[..n]);
        }
        let mut h = p.header;
        h.fragment = Fragment::UNFRAGMENTED;
        let mut w = Writer::with_capacity(p.header_len + total);
        h.encode_with_payload(&mut w, &body);
        Ok(Reassembly::Complete(w.finish()?))
    }

    /// Drops partial messages older than the reassembly timeout.
    pub fn expire(&mut self, now_ms: u64) {
        let buffered = &mut self.buffered;
        self.partial.retain(|_, p| {
            let keep = now_ms.saturating_sub(p.started_ms) < REASSEMBLY_TIMEOUT_MS;
            if !keep {
                *buffered -= p.charged;
            }
            keep
        });
    }
}
