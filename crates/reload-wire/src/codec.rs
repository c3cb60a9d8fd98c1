//! Reader and writer for the TLS-style presentation language of
//! RFC 6940 §6.3.1: big-endian integers and length-prefixed vectors.
//!
//! The reader never allocates on the word of a length field: it first
//! checks the claimed length against the bytes actually present and only
//! then hands out a sub-slice. The writer reserves a length prefix, writes
//! the body, and back-patches the prefix; a body too long for its prefix is
//! remembered as the writer's first error and reported by [`Writer::finish`].

use crate::error::{DecodeError, EncodeError};
use crate::DecodeContext;

/// A cursor over untrusted bytes.
#[derive(Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    ctx: &'a DecodeContext,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8], ctx: &'a DecodeContext) -> Self {
        Reader { buf, pos: 0, ctx }
    }

    pub fn ctx(&self) -> &'a DecodeContext {
        self.ctx
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    /// The bytes not yet consumed, left in place.
    pub fn remaining_bytes(&self) -> &'a [u8] {
        &self.buf[self.pos..]
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Fails unless every byte has been consumed.
    pub fn finish(&self, what: &'static str) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { what, extra }),
        }
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                what,
                needed: n,
                available: self.remaining(),
            });
        }
        let s = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], DecodeError> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array(what)?))
    }
    /// A 24-bit unsigned integer, as used by `<0..2^24-1>` prefixes.
    pub fn u24(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let [a, b, c] = self.array(what)?;
        Ok(u32::from_be_bytes([0, a, b, c]))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
    pub fn u128(&mut self, what: &'static str) -> Result<u128, DecodeError> {
        Ok(u128::from_be_bytes(self.array(what)?))
    }

    /// `enum { false(0), true(1), (255) } Boolean` (§6.3.1.1). Any other
    /// byte is rejected so that decoding stays canonical.
    pub fn boolean(&mut self, what: &'static str) -> Result<bool, DecodeError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(DecodeError::InvalidValue { what, value: v.into() }),
        }
    }

    /// Reads a length prefix of `prefix` bytes (1, 2, 3 or 4) and returns a
    /// reader over exactly that many following bytes.
    pub fn sub(&mut self, prefix: LenPrefix, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        let len = match prefix {
            LenPrefix::U8 => self.u8(what)? as usize,
            LenPrefix::U16 => self.u16(what)? as usize,
            LenPrefix::U24 => self.u24(what)? as usize,
            LenPrefix::U32 => self.u32(what)? as usize,
        };
        self.sub_exact(len, what)
    }

    /// A reader over the next `len` bytes, for lengths carried elsewhere.
    pub fn sub_exact(&mut self, len: usize, what: &'static str) -> Result<Reader<'a>, DecodeError> {
        let buf = self.bytes(len, what)?;
        Ok(Reader {
            buf,
            pos: 0,
            ctx: self.ctx,
        })
    }

    /// `opaque x<0..2^k-1>`: a length-prefixed byte string, copied out.
    pub fn opaque(&mut self, prefix: LenPrefix, what: &'static str) -> Result<Vec<u8>, DecodeError> {
        let mut sub = self.sub(prefix, what)?;
        Ok(sub.rest().to_vec())
    }

    /// Everything not yet consumed.
    pub fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }

    /// `T list<0..2^k-1>`: a length-prefixed list whose elements must fill
    /// the prefix's byte count exactly.
    pub fn list<T>(
        &mut self,
        prefix: LenPrefix,
        what: &'static str,
        item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        self.sub(prefix, what)?.items(item)
    }

    /// Reads items until this reader is exhausted; for lists whose byte
    /// length is carried elsewhere (the forwarding header's three lists).
    pub fn items<T>(
        mut self,
        mut item: impl FnMut(&mut Reader<'a>) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let mut out = Vec::new();
        while !self.is_empty() {
            out.push(item(&mut self)?);
        }
        Ok(out)
    }
}

/// Width of a variable-length vector's length prefix (§6.3.1.1: the minimum
/// number of bytes that can encode the range's maximum).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LenPrefix {
    U8,
    U16,
    U24,
    U32,
}

impl LenPrefix {
    pub const fn width(self) -> usize {
        match self {
            LenPrefix::U8 => 1,
            LenPrefix::U16 => 2,
            LenPrefix::U24 => 3,
            LenPrefix::U32 => 4,
        }
    }
    pub const fn max(self) -> usize {
        match self {
            LenPrefix::U8 => 0xff,
            LenPrefix::U16 => 0xffff,
            LenPrefix::U24 => 0xff_ffff,
            LenPrefix::U32 => 0xffff_ffff,
        }
    }
}

/// Output buffer with back-patched length prefixes.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
    error: Option<EncodeError>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(n),
            error: None,
        }
    }

    /// The encoded bytes, or the first field that did not fit its prefix.
    pub fn finish(self) -> Result<Vec<u8>, EncodeError> {
        match self.error {
            None => Ok(self.buf),
            Some(e) => Err(e),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn fail(&mut self, e: EncodeError) {
        self.error.get_or_insert(e);
    }

    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.bytes(&v.to_be_bytes());
    }
    pub fn u32(&mut self, v: u32) {
        self.bytes(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.bytes(&v.to_be_bytes());
    }
    pub fn u128(&mut self, v: u128) {
        self.bytes(&v.to_be_bytes());
    }
    pub fn boolean(&mut self, v: bool) {
        self.u8(v as u8);
    }

    /// Writes a length prefix, then whatever `body` writes, then patches
    /// the prefix with the body's size.
    pub fn prefixed(&mut self, prefix: LenPrefix, what: &'static str, body: impl FnOnce(&mut Writer)) {
        let at = self.placeholder(prefix);
        body(self);
        let len = self.buf.len() - at - prefix.width();
        self.patch_len(at, prefix, what, len);
    }

    /// Reserves `prefix.width()` bytes for a length written later by
    /// [`Writer::patch_len`]; returns the position of the reservation.
    pub fn placeholder(&mut self, prefix: LenPrefix) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0u8; 4][..prefix.width()]);
        at
    }

    /// Writes `len` into a reservation made by [`Writer::placeholder`].
    pub fn patch_len(&mut self, at: usize, prefix: LenPrefix, what: &'static str, len: usize) {
        if len > prefix.max() {
            self.fail(EncodeError::TooLong {
                what,
                length: len,
                max: prefix.max(),
            });
            return;
        }
        let be = (len as u32).to_be_bytes();
        self.buf[at..at + prefix.width()].copy_from_slice(&be[4 - prefix.width()..]);
    }

    /// `opaque x<0..2^k-1>`.
    pub fn opaque(&mut self, prefix: LenPrefix, what: &'static str, b: &[u8]) {
        self.prefixed(prefix, what, |w| w.bytes(b));
    }

    /// `T list<0..2^k-1>`.
    pub fn list<T: Encode>(&mut self, prefix: LenPrefix, what: &'static str, items: &[T]) {
        self.prefixed(prefix, what, |w| {
            for i in items {
                i.encode(w);
            }
        });
    }
}

/// Room a fresh encoding starts with: most bodies and structures fit, so
/// writing one does not grow its buffer three or four times over.
pub const SMALL_ENCODING: usize = 128;

/// A structure with a wire form.
pub trait Encode {
    fn encode(&self, w: &mut Writer);

    /// Encodes into a fresh buffer.
    fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(SMALL_ENCODING);
        self.encode(&mut w);
        w.finish()
    }
}

/// A structure that can be read back from its wire form.
pub trait Decode: Sized {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a buffer that must hold exactly one value.
    fn from_bytes(buf: &[u8], ctx: &DecodeContext) -> Result<Self, DecodeError> {
        let mut r = Reader::new(buf, ctx);
        let v = Self::decode(&mut r)?;
        r.finish(std::any::type_name::<Self>())?;
        Ok(v)
    }
}
