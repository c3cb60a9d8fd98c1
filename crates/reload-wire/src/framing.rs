//! The overlay link framing header — RFC 6940 §6.6.2 — and the receiver
//! and timer pieces of Simple Reliability (§6.6.3) that build on it.

use crate::codec::{LenPrefix, Reader, Writer};
use crate::error::{DecodeError, EncodeError};
use crate::DecodeContext;

/// `enum { data(128), ack(129), (255) } FramedMessageType`.
pub mod framed_message_type {
    pub const DATA: u8 = 128;
    pub const ACK: u8 = 129;
}

/// Bytes of framing before a data frame's message: type, sequence, uint24 length.
pub const DATA_FRAME_OVERHEAD: usize = 8;
/// Size of an ack frame: type, ack_sequence, received.
pub const ACK_FRAME_LEN: usize = 9;

/// `FramedMessage` — RFC 6940 §6.6.2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FramedMessage {
    Data { sequence: u32, message: Vec<u8> },
    Ack { ack_sequence: u32, received: u32 },
}

impl FramedMessage {
    pub fn encode(&self, w: &mut Writer) {
        match self {
            FramedMessage::Data { sequence, message } => encode_data(w, *sequence, message),
            FramedMessage::Ack { ack_sequence, received } => {
                w.u8(framed_message_type::ACK);
                w.u32(*ack_sequence);
                w.u32(*received);
            }
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::new();
        self.encode(&mut w);
        w.finish()
    }

    /// Decodes exactly one frame (a datagram, or a frame already cut from a stream).
    pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<FramedMessage, DecodeError> {
        match frame_len(buf, ctx)? {
            Some(n) if n == buf.len() => {}
            Some(n) => {
                return Err(DecodeError::BadLength {
                    what: "FramedMessage",
                    expected: n,
                    found: buf.len(),
                })
            }
            None => {
                return Err(DecodeError::Truncated {
                    what: "FramedMessage",
                    needed: DATA_FRAME_OVERHEAD,
                    available: buf.len(),
                })
            }
        }
        Self::parse(buf, ctx)
    }

    /// Reads a frame whose length `frame_len` has already checked.
    fn parse(buf: &[u8], ctx: &DecodeContext) -> Result<FramedMessage, DecodeError> {
        let mut r = Reader::new(buf, ctx);
        let f = match r.u8("FramedMessage.type")? {
            framed_message_type::DATA => FramedMessage::Data {
                sequence: r.u32("FramedMessage.sequence")?,
                message: r.opaque(LenPrefix::U24, "FramedMessage.message")?,
            },
            _ => FramedMessage::Ack {
                ack_sequence: r.u32("FramedMessage.ack_sequence")?,
                received: r.u32("FramedMessage.received")?,
            },
        };
        r.finish("FramedMessage")?;
        Ok(f)
    }
}

/// Writes a data frame around an already encoded message without copying
/// it into a `FramedMessage` first.
pub fn encode_data(w: &mut Writer, sequence: u32, message: &[u8]) {
    w.u8(framed_message_type::DATA);
    w.u32(sequence);
    w.opaque(LenPrefix::U24, "FramedMessage.message", message);
}

/// How long the frame at the start of `buf` is, or `None` if too few bytes
/// have arrived to tell. A data frame larger than the overlay's
/// max-message-size is refused as soon as its length is visible (§6.6).
pub fn frame_len(buf: &[u8], ctx: &DecodeContext) -> Result<Option<usize>, DecodeError> {
    let Some(&t) = buf.first() else {
        return Ok(None);
    };
    match t {
        framed_message_type::DATA => {
            if buf.len() < DATA_FRAME_OVERHEAD {
                return Ok(None);
            }
            let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
            if len > ctx.max_message_size {
                return Err(DecodeError::MessageTooLarge {
                    length: len,
                    max: ctx.max_message_size,
                });
            }
            Ok(Some(DATA_FRAME_OVERHEAD + len))
        }
        framed_message_type::ACK => Ok(Some(ACK_FRAME_LEN)),
        t => Err(DecodeError::InvalidValue {
            what: "FramedMessage.type",
            value: t.into(),
        }),
    }
}

/// Cuts frames out of a byte stream (TLS/TCP with FH, §6.6.5). Feed it
/// what the socket returns; take whole frames out. Holds at most one
/// partial frame, which is bounded by max-message-size.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    start: usize,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, bytes: &[u8]) {
        self.input(0).extend_from_slice(bytes);
    }

    /// The buffer received bytes are appended to, with room for at least
    /// `room` more: a reader can fill it directly (`read_buf`) instead of
    /// copying from a buffer of its own. Only bytes read in are written,
    /// so a link that carries small messages keeps few pages resident.
    pub fn input(&mut self, room: usize) -> &mut Vec<u8> {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.reserve(room);
        &mut self.buf
    }

    /// The next whole frame, `Ok(None)` if more bytes are needed, or an
    /// error after which the stream cannot be resynchronised and the
    /// link must be closed.
    pub fn next_frame(&mut self, ctx: &DecodeContext) -> Result<Option<FramedMessage>, DecodeError> {
        let pending = &self.buf[self.start..];
        let Some(n) = frame_len(pending, ctx)? else {
            return Ok(None);
        };
        if pending.len() < n {
            return Ok(None);
        }
        let frame = FramedMessage::parse(&pending[..n], ctx)?;
        self.start += n;
        if self.start > 64 * 1024 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(frame))
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// The receiver side of §6.6.2/§6.6.3: remembers the 32 most recently
/// received sequence numbers and builds the ACK for each arrival.
///
/// Bit numbering (the RFC says only "the N-M bit"): counted from the least
/// significant bit with the packet just before N as bit 0, i.e. M sets
/// `1 << (N - M - 1)`. This is how Wireshark and RELOAD.NET read it; see
/// docs/decisions/0002-rfc6940-ambiguities.md.
#[derive(Debug, Clone, Default)]
pub struct ReceivedWindow {
    recent: [u32; 32],
    count: usize,
    next: usize,
}

impl ReceivedWindow {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the arrival of `sequence` and returns the ACK to send.
    pub fn on_data(&mut self, sequence: u32) -> FramedMessage {
        let mut received = 0u32;
        for &m in &self.recent[..self.count] {
            let d = sequence.wrapping_sub(m);
            if (1..32).contains(&d) {
                received |= 1 << (d - 1);
            }
        }
        self.recent[self.next] = sequence;
        self.next = (self.next + 1) % 32;
        self.count = (self.count + 1).min(32);
        FramedMessage::Ack {
            ack_sequence: sequence,
            received,
        }
    }
}

/// The sequence numbers an ACK positively confirms: `ack_sequence` and
/// each earlier one whose bit is set.
pub fn acked_sequences(ack_sequence: u32, received: u32) -> impl Iterator<Item = u32> {
    std::iter::once(ack_sequence).chain(
        (0..31u32)
            .filter(move |b| received & (1 << b) != 0)
            .map(move |b| ack_sequence.wrapping_sub(b + 1)),
    )
}

/// Retransmission timeout per RFC 6298 §2, as §6.6.3.1 and §6.6.5 require,
/// rounded to milliseconds rather than seconds (§6.6.3.1).
#[derive(Debug, Clone)]
pub struct RtoEstimator {
    srtt_us: Option<u64>,
    rttvar_us: u64,
    rto_us: u64,
    min_rto_us: u64,
    max_rto_us: u64,
}

impl RtoEstimator {
    /// Static default RTO of §6.6.3.1.
    pub const DEFAULT_RTO_MS: u64 = 500;
    const K: u64 = 4;

    pub fn new(initial_rto_ms: u64, min_rto_ms: u64, max_rto_ms: u64) -> Self {
        RtoEstimator {
            srtt_us: None,
            rttvar_us: 0,
            rto_us: initial_rto_ms * 1000,
            min_rto_us: min_rto_ms * 1000,
            max_rto_us: max_rto_ms * 1000,
        }
    }

    /// Feeds one RTT measurement (RFC 6298 (2.2) first, (2.3) after).
    pub fn on_rtt_sample(&mut self, rtt_us: u64) {
        match self.srtt_us {
            None => {
                self.srtt_us = Some(rtt_us);
                self.rttvar_us = rtt_us / 2;
            }
            Some(srtt) => {
                // beta = 1/4, alpha = 1/8
                self.rttvar_us = (3 * self.rttvar_us + srtt.abs_diff(rtt_us)) / 4;
                self.srtt_us = Some((7 * srtt + rtt_us) / 8);
            }
        }
        let srtt = self.srtt_us.unwrap_or(rtt_us);
        // G, the clock granularity, is 1 ms here.
        let rto = srtt + (Self::K * self.rttvar_us).max(1000);
        self.rto_us = rto.div_ceil(1000) * 1000;
        self.rto_us = self.rto_us.clamp(self.min_rto_us, self.max_rto_us);
    }

    /// Doubles the RTO after a retransmission (RFC 6298 (5.5)).
    pub fn back_off(&mut self) {
        self.rto_us = (self.rto_us * 2).min(self.max_rto_us);
    }

    pub fn rto_us(&self) -> u64 {
        self.rto_us
    }

    pub fn srtt_us(&self) -> Option<u64> {
        self.srtt_us
    }
}

impl Default for RtoEstimator {
    fn default() -> Self {
        RtoEstimator::new(Self::DEFAULT_RTO_MS, 1, 60_000)
    }
}
