//! A whole RELOAD message — RFC 6940 §6.3: forwarding header, message
//! contents, security block.

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::contents::MessageContents;
use crate::error::{DecodeError, EncodeError};
use crate::header::ForwardingHeader;
use crate::security::{SecurityBlock, SignerIdentity};
use crate::DecodeContext;

/// A complete (unfragmented or reassembled) RELOAD message — RFC 6940 §6.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub forwarding_header: ForwardingHeader,
    pub message_contents: MessageContents,
    pub security_block: SecurityBlock,
}

impl Message {
    pub fn encode(&self, w: &mut Writer) {
        self.forwarding_header.encode_with(w, |w| {
            self.message_contents.encode(w);
            self.security_block.encode(w);
        });
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(256 + self.message_contents.message_body.len());
        self.encode(&mut w);
        w.finish()
    }

    /// Decodes one whole message. A fragment (§6.7) is refused: reassemble
    /// it first with [`crate::fragment::Reassembler`].
    pub fn decode(buf: &[u8], ctx: &DecodeContext) -> Result<Message, DecodeError> {
        let (forwarding_header, payload) = ForwardingHeader::split(buf, ctx)?;
        if !forwarding_header.fragment.is_unfragmented() {
            return Err(DecodeError::InvalidValue {
                what: "ForwardingHeader.fragment (a fragment; reassemble first)",
                value: forwarding_header.fragment.raw().into(),
            });
        }
        let mut r = Reader::new(payload, ctx);
        let message_contents = MessageContents::decode(&mut r)?;
        let security_block = SecurityBlock::decode(&mut r)?;
        r.finish("Message")?;
        Ok(Message {
            forwarding_header,
            message_contents,
            security_block,
        })
    }

    /// The bytes a message signature covers (§6.3.4):
    /// `overlay || transaction_id || MessageContents || SignerIdentity`.
    pub fn signature_input(
        overlay: u32,
        transaction_id: u64,
        contents: &MessageContents,
        signer: &SignerIdentity,
    ) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(64 + contents.message_body.len());
        w.u32(overlay);
        w.u64(transaction_id);
        contents.encode(&mut w);
        signer.encode(&mut w);
        w.finish()
    }
}
