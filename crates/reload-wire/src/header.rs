//! The forwarding header — RFC 6940 §6.3.2, with Destination (§6.3.2.2)
//! and ForwardingOption (§6.3.2.3).

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::contents::MessageCode;
use crate::error::DecodeError;
use crate::ids::{NodeId, ResourceId, MIN_NODE_ID_LENGTH};
use crate::DecodeContext;

/// `relo_token`: "RELO" with the high bit of the first byte set (§6.3.2).
pub const RELO_TOKEN: u32 = 0xd245_4c4f;
/// `version` of this document, RELOAD 1.0 times ten (§6.3.2).
pub const RELOAD_VERSION: u8 = 0x0a;
/// Default and maximum initial TTL unless the configuration says otherwise (§6.3.2).
pub const DEFAULT_INITIAL_TTL: u8 = 100;
/// Size of the forwarding header before its three lists.
pub const FIXED_HEADER_LEN: usize = 38;
/// Where the fixed header's `ttl`, `length` and `via_list_length` fields
/// are (§6.3.2), for a relaying peer that rewrites them in place.
const TTL_AT: usize = 11;
const LENGTH_AT: usize = 16;
const VIA_LIST_LENGTH_AT: usize = 32;

/// `enum { invalidDestinationType(0), node(1), resource(2), opaque_id_type(3), (255) } DestinationType`.
pub mod destination_type {
    pub const NODE: u8 = 1;
    pub const RESOURCE: u8 = 2;
    pub const OPAQUE_ID_TYPE: u8 = 3;
}

/// `Destination` — RFC 6940 §6.3.2.2.
///
/// Either the TLV form (type, length, DestinationData) or the compressed
/// 16-bit form whose top bit is 1, which stands for a 2-byte opaque id.
/// The two are kept apart so that a decoded header re-encodes to the same
/// bytes. Unknown destination types are kept raw, as the TLV allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Node(NodeId),
    /// Only valid as the last entry of a destination list.
    Resource(ResourceId),
    /// `opaque opaque_id<0..2^8-1>` in TLV form.
    OpaqueId(Vec<u8>),
    /// The compressed form: a `uint16` with the top bit set (§6.3.2.2).
    CompressedOpaqueId(u16),
    Unknown {
        destination_type: u8,
        data: Vec<u8>,
    },
}

impl Encode for Destination {
    fn encode(&self, w: &mut Writer) {
        match self {
            Destination::CompressedOpaqueId(v) => w.u16(v | 0x8000),
            Destination::Node(id) => {
                w.u8(destination_type::NODE);
                w.prefixed(LenPrefix::U8, "Destination.length", |w| id.encode(w));
            }
            Destination::Resource(id) => {
                w.u8(destination_type::RESOURCE);
                w.prefixed(LenPrefix::U8, "Destination.length", |w| id.encode(w));
            }
            Destination::OpaqueId(b) => {
                w.u8(destination_type::OPAQUE_ID_TYPE);
                w.prefixed(LenPrefix::U8, "Destination.length", |w| {
                    w.opaque(LenPrefix::U8, "Destination.opaque_id", b)
                });
            }
            Destination::Unknown { destination_type, data } => {
                w.u8(*destination_type);
                w.opaque(LenPrefix::U8, "Destination.length", data);
            }
        }
    }
}

impl Decode for Destination {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        DestinationRef::decode(r).map(DestinationRef::to_owned)
    }
}

/// Flags of a ForwardingOption — RFC 6940 §6.3.2.3.
pub mod forwarding_flags {
    pub const FORWARD_CRITICAL: u8 = 0x01;
    pub const DESTINATION_CRITICAL: u8 = 0x02;
    pub const RESPONSE_COPY: u8 = 0x04;
}

/// `ForwardingOption` — RFC 6940 §6.3.2.3. No option types are defined
/// beyond exp-forward(1), so the value is kept opaque.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingOption {
    pub option_type: u8,
    pub flags: u8,
    pub option: Vec<u8>,
}

impl Encode for ForwardingOption {
    fn encode(&self, w: &mut Writer) {
        w.u8(self.option_type);
        w.u8(self.flags);
        w.opaque(LenPrefix::U16, "ForwardingOption.length", &self.option);
    }
}

impl Decode for ForwardingOption {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ForwardingOption {
            option_type: r.u8("ForwardingOption.type")?,
            flags: r.u8("ForwardingOption.flags")?,
            option: r.opaque(LenPrefix::U16, "ForwardingOption.length")?,
        })
    }
}

/// The `fragment` field — RFC 6940 §6.3.2 and §6.7: the high bit always
/// set, then the last-fragment bit, six reserved bits, and a 24-bit offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fragment(u32);

impl Fragment {
    const ALWAYS: u32 = 0x8000_0000;
    const LAST: u32 = 0x4000_0000;
    pub const MAX_OFFSET: u32 = 0x00ff_ffff;
    /// The value of an unfragmented message: last fragment, offset 0.
    pub const UNFRAGMENTED: Fragment = Fragment(0xc000_0000);

    /// A fragment at `offset` bytes after the forwarding header.
    pub fn new(last: bool, offset: u32) -> Fragment {
        Fragment(Self::ALWAYS | if last { Self::LAST } else { 0 } | (offset & Self::MAX_OFFSET))
    }

    /// The raw field. Messages whose high bit is clear are refused (§6.7).
    pub fn from_raw(v: u32) -> Result<Fragment, DecodeError> {
        if v & Self::ALWAYS == 0 {
            return Err(DecodeError::InvalidValue {
                what: "ForwardingHeader.fragment",
                value: v.into(),
            });
        }
        Ok(Fragment(v))
    }

    pub fn raw(self) -> u32 {
        self.0
    }
    pub fn is_last(self) -> bool {
        self.0 & Self::LAST != 0
    }
    pub fn offset(self) -> u32 {
        self.0 & Self::MAX_OFFSET
    }
    /// The six reserved bits (SHOULD be zero; kept as received).
    pub fn reserved(self) -> u8 {
        ((self.0 >> 24) & 0x3f) as u8
    }
    /// Whether this is a whole message rather than a piece of one.
    pub fn is_unfragmented(self) -> bool {
        self.is_last() && self.offset() == 0
    }
}

impl Default for Fragment {
    fn default() -> Self {
        Fragment::UNFRAGMENTED
    }
}

/// `ForwardingHeader` — RFC 6940 §6.3.2.
///
/// `relo_token` is implied and `length` and the three list lengths are
/// derived when the header is written in front of a payload, so they are
/// not fields here; [`ForwardingHeader::split`] reports the length read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardingHeader {
    pub overlay: u32,
    pub configuration_sequence: u16,
    pub version: u8,
    pub ttl: u8,
    pub fragment: Fragment,
    pub transaction_id: u64,
    pub max_response_length: u32,
    pub via_list: Vec<Destination>,
    pub destination_list: Vec<Destination>,
    pub options: Vec<ForwardingOption>,
}

impl ForwardingHeader {
    /// A header for a new, unfragmented request with the RFC's defaults.
    pub fn new(overlay: u32, transaction_id: u64, destination_list: Vec<Destination>) -> Self {
        ForwardingHeader {
            overlay,
            configuration_sequence: 0,
            version: RELOAD_VERSION,
            ttl: DEFAULT_INITIAL_TTL,
            fragment: Fragment::UNFRAGMENTED,
            transaction_id,
            max_response_length: 0,
            via_list: Vec::new(),
            destination_list,
            options: Vec::new(),
        }
    }

    /// Writes the header followed by `payload`, filling in `length` and the
    /// list lengths. This is also the forwarding fast path: a peer that only
    /// relays a message re-writes the header and copies the payload verbatim.
    pub fn encode_with_payload(&self, w: &mut Writer, payload: &[u8]) {
        self.encode_with(w, |w| w.bytes(payload));
    }

    /// Like [`encode_with_payload`](Self::encode_with_payload) with the
    /// payload produced by a closure.
    pub fn encode_with(&self, w: &mut Writer, payload: impl FnOnce(&mut Writer)) {
        let start = w.len();
        w.u32(RELO_TOKEN);
        w.u32(self.overlay);
        w.u16(self.configuration_sequence);
        w.u8(self.version);
        w.u8(self.ttl);
        w.u32(self.fragment.raw());
        let length_at = w.placeholder(LenPrefix::U32);
        w.u64(self.transaction_id);
        w.u32(self.max_response_length);
        let via_at = w.placeholder(LenPrefix::U16);
        let dest_at = w.placeholder(LenPrefix::U16);
        let opts_at = w.placeholder(LenPrefix::U16);
        for (at, what, list) in [
            (via_at, "ForwardingHeader.via_list_length", &self.via_list),
            (
                dest_at,
                "ForwardingHeader.destination_list_length",
                &self.destination_list,
            ),
        ] {
            let from = w.len();
            for d in list {
                d.encode(w);
            }
            let n = w.len() - from;
            w.patch_len(at, LenPrefix::U16, what, n);
        }
        let from = w.len();
        for o in &self.options {
            o.encode(w);
        }
        let n = w.len() - from;
        w.patch_len(opts_at, LenPrefix::U16, "ForwardingHeader.options_length", n);
        payload(w);
        let total = w.len() - start;
        w.patch_len(length_at, LenPrefix::U32, "ForwardingHeader.length", total);
    }

    /// Reads the forwarding header at the start of `buf` — the only part a
    /// peer that merely forwards needs. Checks the RELOAD token, that the
    /// `length` field is within the overlay's max-message-size and equals the
    /// bytes given, and returns the header and the payload after it.
    pub fn split<'a>(buf: &'a [u8], ctx: &DecodeContext) -> Result<(ForwardingHeader, &'a [u8]), DecodeError> {
        let view = HeaderView::parse(buf, ctx)?;
        Ok((view.to_header(ctx)?, view.payload()))
    }
}

/// A Destination (§6.3.2.2) borrowed from the bytes it came in: what a
/// relaying peer reads, and what [`Destination::decode`] checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationRef<'a> {
    Node(NodeId),
    /// The Resource-ID's bytes.
    Resource(&'a [u8]),
    OpaqueId(&'a [u8]),
    CompressedOpaqueId(u16),
    Unknown {
        destination_type: u8,
        data: &'a [u8],
    },
}

impl<'a> DestinationRef<'a> {
    /// Reads and checks one Destination.
    pub fn decode(r: &mut Reader<'a>) -> Result<DestinationRef<'a>, DecodeError> {
        let (d, len) = DestinationRef::parse(r.remaining_bytes(), r.ctx().node_id_length)?;
        r.bytes(len, "Destination")?;
        Ok(d)
    }

    /// Checks the Destination at the start of `raw` (§6.3.2.2) and
    /// returns it with its encoded length. Straight from the slice: the
    /// lists of every message's header are read with this.
    pub fn parse(raw: &'a [u8], node_id_length: usize) -> Result<(DestinationRef<'a>, usize), DecodeError> {
        let truncated = |what, needed, available| DecodeError::Truncated {
            what,
            needed,
            available,
        };
        let first = *raw.first().ok_or_else(|| truncated("Destination.type", 1, 0))?;
        if first & 0x80 != 0 {
            let low = *raw.get(1).ok_or_else(|| truncated("Destination.opaque_id", 1, 0))?;
            return Ok((DestinationRef::CompressedOpaqueId(u16::from_be_bytes([first, low])), 2));
        }
        let len = *raw.get(1).ok_or_else(|| truncated("Destination.length", 1, 0))? as usize;
        let data = raw
            .get(2..2 + len)
            .ok_or_else(|| truncated("Destination.length", len, raw.len() - 2))?;
        // The data must be filled exactly: by the Node-ID, or by one
        // `opaque <0..2^8-1>`.
        let exactly = |used: usize, what| match data.len().checked_sub(used) {
            Some(0) => Ok(()),
            Some(extra) => Err(DecodeError::TrailingBytes {
                what: "Destination.destination_data",
                extra,
            }),
            None => Err(truncated(what, used, data.len())),
        };
        let inner = |what| {
            let n = *data.first().ok_or_else(|| truncated(what, 1, 0))? as usize;
            exactly(1 + n, what).map(|()| &data[1..])
        };
        let d = match first {
            destination_type::NODE => {
                exactly(node_id_length, "NodeId")?;
                DestinationRef::Node(NodeId::from_slice(data).map_err(|_| DecodeError::BadLength {
                    what: "NodeId",
                    expected: MIN_NODE_ID_LENGTH,
                    found: node_id_length,
                })?)
            }
            destination_type::RESOURCE => DestinationRef::Resource(inner("ResourceId")?),
            destination_type::OPAQUE_ID_TYPE => DestinationRef::OpaqueId(inner("Destination.opaque_id")?),
            0 => {
                return Err(DecodeError::InvalidValue {
                    what: "Destination.type",
                    value: 0,
                })
            }
            t => DestinationRef::Unknown {
                destination_type: t,
                data,
            },
        };
        Ok((d, 2 + len))
    }

    pub fn to_owned(self) -> Destination {
        match self {
            DestinationRef::Node(n) => Destination::Node(n),
            DestinationRef::Resource(r) => Destination::Resource(ResourceId(r.to_vec())),
            DestinationRef::OpaqueId(o) => Destination::OpaqueId(o.to_vec()),
            DestinationRef::CompressedOpaqueId(v) => Destination::CompressedOpaqueId(v),
            DestinationRef::Unknown { destination_type, data } => Destination::Unknown {
                destination_type,
                data: data.to_vec(),
            },
        }
    }
}

impl Destination {
    pub fn as_ref(&self) -> DestinationRef<'_> {
        match self {
            Destination::Node(n) => DestinationRef::Node(*n),
            Destination::Resource(r) => DestinationRef::Resource(r.as_bytes()),
            Destination::OpaqueId(o) => DestinationRef::OpaqueId(o),
            Destination::CompressedOpaqueId(v) => DestinationRef::CompressedOpaqueId(*v),
            Destination::Unknown { destination_type, data } => DestinationRef::Unknown {
                destination_type: *destination_type,
                data,
            },
        }
    }
}

/// A forwarding header read in place (§6.3.2): the fixed fields, and the
/// three lists as the bytes they came in, each entry checked. A peer that
/// relays a message (§6.1.2) rewrites the header from this view without
/// decoding the lists into vectors; [`HeaderView::to_header`] gives the
/// owned header for a message it handles itself.
#[derive(Debug, Clone, Copy)]
pub struct HeaderView<'a> {
    buf: &'a [u8],
    pub overlay: u32,
    pub configuration_sequence: u16,
    pub version: u8,
    pub ttl: u8,
    pub fragment: Fragment,
    pub transaction_id: u64,
    pub max_response_length: u32,
    /// Where the via list, the destination list and the options start and
    /// where the payload starts.
    via_at: usize,
    destinations_at: usize,
    options_at: usize,
    payload_at: usize,
    destination_count: usize,
    node_id_length: usize,
}

impl<'a> HeaderView<'a> {
    /// Reads and checks the header at the start of `buf`, as
    /// [`ForwardingHeader::split`] does.
    pub fn parse(buf: &'a [u8], ctx: &DecodeContext) -> Result<HeaderView<'a>, DecodeError> {
        let mut r = Reader::new(buf, ctx);
        let token = r.u32("ForwardingHeader.relo_token")?;
        if token != RELO_TOKEN {
            return Err(DecodeError::NotReload(token));
        }
        let overlay = r.u32("ForwardingHeader.overlay")?;
        let configuration_sequence = r.u16("ForwardingHeader.configuration_sequence")?;
        let version = r.u8("ForwardingHeader.version")?;
        let ttl = r.u8("ForwardingHeader.ttl")?;
        let fragment = Fragment::from_raw(r.u32("ForwardingHeader.fragment")?)?;
        let length = r.u32("ForwardingHeader.length")? as usize;
        if length > ctx.max_message_size {
            return Err(DecodeError::MessageTooLarge {
                length,
                max: ctx.max_message_size,
            });
        }
        if length != buf.len() {
            return Err(DecodeError::BadLength {
                what: "ForwardingHeader.length",
                expected: buf.len(),
                found: length,
            });
        }
        let transaction_id = r.u64("ForwardingHeader.transaction_id")?;
        let max_response_length = r.u32("ForwardingHeader.max_response_length")?;
        let via_len = r.u16("ForwardingHeader.via_list_length")? as usize;
        let dest_len = r.u16("ForwardingHeader.destination_list_length")? as usize;
        let opts_len = r.u16("ForwardingHeader.options_length")? as usize;
        let via_at = r.position();
        let destinations = |r: &mut Reader<'_>, len, what| {
            let list = r.sub_exact(len, what)?.rest();
            entries(list, ctx.node_id_length).try_fold(0, |n, entry| entry.map(|_| n + 1))
        };
        destinations(&mut r, via_len, "ForwardingHeader.via_list")?;
        let destinations_at = r.position();
        let destination_count = destinations(&mut r, dest_len, "ForwardingHeader.destination_list")?;
        let options_at = r.position();
        r.sub_exact(opts_len, "ForwardingHeader.options")?
            .items(ForwardingOption::decode)?;
        Ok(HeaderView {
            buf,
            overlay,
            configuration_sequence,
            version,
            ttl,
            fragment,
            transaction_id,
            max_response_length,
            via_at,
            destinations_at,
            options_at,
            payload_at: r.position(),
            destination_count,
            node_id_length: ctx.node_id_length,
        })
    }

    /// Whether the header carries any ForwardingOption (§6.3.2.3).
    pub fn has_options(&self) -> bool {
        self.payload_at > self.options_at
    }

    /// The message after the header.
    pub fn payload(&self) -> &'a [u8] {
        &self.buf[self.payload_at..]
    }

    pub fn destination_count(&self) -> usize {
        self.destination_count
    }

    /// The Destination List's entries in order, each with its encoding.
    pub fn destinations(&self) -> impl Iterator<Item = (DestinationRef<'a>, &'a [u8])> + Clone + 'a {
        entries(&self.buf[self.destinations_at..self.options_at], self.node_id_length).map_while(Result::ok)
    }

    /// The owned header.
    pub fn to_header(&self, ctx: &DecodeContext) -> Result<ForwardingHeader, DecodeError> {
        let b = self.buf;
        let owned = |from: usize, to: usize| {
            entries(&b[from..to], self.node_id_length)
                .map_while(Result::ok)
                .map(|(d, _)| d.to_owned())
                .collect()
        };
        Ok(ForwardingHeader {
            overlay: self.overlay,
            configuration_sequence: self.configuration_sequence,
            version: self.version,
            ttl: self.ttl,
            fragment: self.fragment,
            transaction_id: self.transaction_id,
            max_response_length: self.max_response_length,
            via_list: owned(self.via_at, self.destinations_at),
            destination_list: owned(self.destinations_at, self.options_at),
            options: Reader::new(&b[self.options_at..self.payload_at], ctx).items(ForwardingOption::decode)?,
        })
    }

    /// The message as relayed (§6.1.2, §6.3.2): TTL one less, the first
    /// `skip` Destination List entries (this node's) gone, `via` appended
    /// to the Via List; the rest, payload included, as it came. `None`
    /// when the Via List would outgrow its 16-bit length.
    pub fn relayed(&self, skip: usize, via: &Destination) -> Option<Vec<u8>> {
        let b = self.buf;
        let mut entry = Writer::with_capacity(20);
        via.encode(&mut entry);
        let entry = entry.finish().ok()?;
        let skipped: usize = self.destinations().take(skip).map(|(_, raw)| raw.len()).sum();
        let via_len = self.destinations_at - self.via_at + entry.len();
        let dest_len = self.options_at - self.destinations_at - skipped;
        let total = b.len() + entry.len() - skipped;
        let mut out = Vec::with_capacity(total);
        out.extend_from_slice(&b[..TTL_AT]);
        out.push(self.ttl.checked_sub(1)?);
        out.extend_from_slice(&b[TTL_AT + 1..LENGTH_AT]);
        out.extend_from_slice(&u32::try_from(total).ok()?.to_be_bytes());
        out.extend_from_slice(&b[LENGTH_AT + 4..VIA_LIST_LENGTH_AT]);
        out.extend_from_slice(&u16::try_from(via_len).ok()?.to_be_bytes());
        out.extend_from_slice(&u16::try_from(dest_len).ok()?.to_be_bytes());
        out.extend_from_slice(&b[VIA_LIST_LENGTH_AT + 4..FIXED_HEADER_LEN]);
        out.extend_from_slice(&b[self.via_at..self.destinations_at]);
        out.extend_from_slice(&entry);
        out.extend_from_slice(&b[self.destinations_at + skipped..]);
        Some(out)
    }
}

/// The entries of a Destination list, each with its encoding; an entry
/// that does not parse ends the list with its error.
fn entries(
    mut list: &[u8],
    node_id_length: usize,
) -> impl Iterator<Item = Result<(DestinationRef<'_>, &[u8]), DecodeError>> + Clone {
    std::iter::from_fn(move || {
        if list.is_empty() {
            return None;
        }
        Some(match DestinationRef::parse(list, node_id_length) {
            Ok((d, len)) => {
                let (raw, after) = list.split_at(len);
                list = after;
                Ok((d, raw))
            }
            Err(e) => {
                list = &[];
                Err(e)
            }
        })
    })
}

/// The message code of a whole message (RFC 6940 §6.3.3), read past the
/// forwarding header's three lists by their lengths without decoding
/// anything else; `None` if the message is too short to hold it.
pub fn peek_message_code(buf: &[u8]) -> Option<MessageCode> {
    let at = |i: usize| buf.get(i..i + 2).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize);
    // via_list_length, destination_list_length and options_length end
    // the fixed part (§6.3.2).
    let lists = at(VIA_LIST_LENGTH_AT)? + at(VIA_LIST_LENGTH_AT + 2)? + at(VIA_LIST_LENGTH_AT + 4)?;
    let start = FIXED_HEADER_LEN + lists;
    at(start).map(|code| MessageCode(code as u16))
}

/// Reads only the fixed part of a forwarding header to learn the message's
/// total length, e.g. to enforce max-message-size before the rest has
/// arrived (§6.6). Returns `None` while fewer than the 20 bytes up to and
/// including `length` are present.
pub fn peek_message_length(buf: &[u8]) -> Option<Result<u32, DecodeError>> {
    if buf.len() < 20 {
        return None;
    }
    let token = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
    if token != RELO_TOKEN {
        return Some(Err(DecodeError::NotReload(token)));
    }
    Some(Ok(u32::from_be_bytes([buf[16], buf[17], buf[18], buf[19]])))
}
