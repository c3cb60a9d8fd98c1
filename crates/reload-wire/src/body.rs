//! The typed message body: which structure `message_body` holds for each
//! message code (RFC 6940 §6.3.3: "a message_code value of join_req means
//! that the structure named JoinReq is inserted inside message_body").

use crate::codec::{Decode, Encode, Reader, Writer};
use crate::contents::{ErrorResponse, MessageCode, MessageContents};
use crate::error::{DecodeError, EncodeError};
use crate::link_management::{AppAttachAns, AppAttachReq, AttachReqAns, ConfigUpdateReq, PingAns, PingReq};
use crate::storage::{FetchAns, FetchReq, FindAns, FindReq, StatAns, StatReq, StoreAns, StoreReq};
use crate::topology::{JoinAns, JoinReq, LeaveReq, ProbeAns, ProbeReq, RouteQueryReq};
use crate::DecodeContext;

/// A message body by message code (§14.8).
///
/// Bodies the RFC declares overlay specific (UpdateReq, UpdateAns,
/// RouteQueryAns) are kept as bytes; Chord-reload's forms are in
/// [`crate::chord`]. Empty answers (LeaveAns, ConfigUpdateAns) must be empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    ProbeReq(ProbeReq),
    ProbeAns(ProbeAns),
    AttachReq(AttachReqAns),
    AttachAns(AttachReqAns),
    StoreReq(StoreReq),
    StoreAns(StoreAns),
    FetchReq(FetchReq),
    FetchAns(FetchAns),
    FindReq(FindReq),
    FindAns(FindAns),
    JoinReq(JoinReq),
    JoinAns(JoinAns),
    LeaveReq(LeaveReq),
    LeaveAns,
    UpdateReq(Vec<u8>),
    UpdateAns(Vec<u8>),
    RouteQueryReq(RouteQueryReq),
    RouteQueryAns(Vec<u8>),
    PingReq(PingReq),
    PingAns(PingAns),
    StatReq(StatReq),
    StatAns(StatAns),
    AppAttachReq(AppAttachReq),
    AppAttachAns(AppAttachAns),
    ConfigUpdateReq(ConfigUpdateReq),
    ConfigUpdateAns,
    Error(ErrorResponse),
    /// exp_a/exp_b and codes this document does not define.
    Other {
        code: MessageCode,
        body: Vec<u8>,
    },
}

impl Body {
    pub fn message_code(&self) -> MessageCode {
        use MessageCode as C;
        match self {
            Body::ProbeReq(_) => C::PROBE_REQ,
            Body::ProbeAns(_) => C::PROBE_ANS,
            Body::AttachReq(_) => C::ATTACH_REQ,
            Body::AttachAns(_) => C::ATTACH_ANS,
            Body::StoreReq(_) => C::STORE_REQ,
            Body::StoreAns(_) => C::STORE_ANS,
            Body::FetchReq(_) => C::FETCH_REQ,
            Body::FetchAns(_) => C::FETCH_ANS,
            Body::FindReq(_) => C::FIND_REQ,
            Body::FindAns(_) => C::FIND_ANS,
            Body::JoinReq(_) => C::JOIN_REQ,
            Body::JoinAns(_) => C::JOIN_ANS,
            Body::LeaveReq(_) => C::LEAVE_REQ,
            Body::LeaveAns => C::LEAVE_ANS,
            Body::UpdateReq(_) => C::UPDATE_REQ,
            Body::UpdateAns(_) => C::UPDATE_ANS,
            Body::RouteQueryReq(_) => C::ROUTE_QUERY_REQ,
            Body::RouteQueryAns(_) => C::ROUTE_QUERY_ANS,
            Body::PingReq(_) => C::PING_REQ,
            Body::PingAns(_) => C::PING_ANS,
            Body::StatReq(_) => C::STAT_REQ,
            Body::StatAns(_) => C::STAT_ANS,
            Body::AppAttachReq(_) => C::APP_ATTACH_REQ,
            Body::AppAttachAns(_) => C::APP_ATTACH_ANS,
            Body::ConfigUpdateReq(_) => C::CONFIG_UPDATE_REQ,
            Body::ConfigUpdateAns => C::CONFIG_UPDATE_ANS,
            Body::Error(_) => C::ERROR,
            Body::Other { code, .. } => *code,
        }
    }

    /// Encodes the body alone (the `message_body` bytes).
    pub fn encode(&self, w: &mut Writer) {
        match self {
            Body::ProbeReq(b) => b.encode(w),
            Body::ProbeAns(b) => b.encode(w),
            Body::AttachReq(b) | Body::AttachAns(b) => b.encode(w),
            Body::StoreReq(b) => b.encode(w),
            Body::StoreAns(b) => b.encode(w),
            Body::FetchReq(b) | Body::StatReq(b) => b.encode(w),
            Body::FetchAns(b) => b.encode(w),
            Body::FindReq(b) => b.encode(w),
            Body::FindAns(b) => b.encode(w),
            Body::JoinReq(b) => b.encode(w),
            Body::JoinAns(b) => b.encode(w),
            Body::LeaveReq(b) => b.encode(w),
            Body::LeaveAns | Body::ConfigUpdateAns => {}
            Body::UpdateReq(b) | Body::UpdateAns(b) | Body::RouteQueryAns(b) => w.bytes(b),
            Body::RouteQueryReq(b) => b.encode(w),
            Body::PingReq(b) => b.encode(w),
            Body::PingAns(b) => b.encode(w),
            Body::StatAns(b) => b.encode(w),
            Body::AppAttachReq(b) | Body::AppAttachAns(b) => b.encode(w),
            Body::ConfigUpdateReq(b) => b.encode(w),
            Body::Error(b) => b.encode(w),
            Body::Other { body, .. } => w.bytes(body),
        }
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(crate::codec::SMALL_ENCODING);
        self.encode(&mut w);
        w.finish()
    }

    /// Decodes `message_body` according to `code`; the body must be consumed exactly.
    pub fn decode(code: MessageCode, body: &[u8], ctx: &DecodeContext) -> Result<Body, DecodeError> {
        use MessageCode as C;
        let mut r = Reader::new(body, ctx);
        let b = match code {
            C::PROBE_REQ => Body::ProbeReq(ProbeReq::decode(&mut r)?),
            C::PROBE_ANS => Body::ProbeAns(ProbeAns::decode(&mut r)?),
            C::ATTACH_REQ => Body::AttachReq(AttachReqAns::decode(&mut r)?),
            C::ATTACH_ANS => Body::AttachAns(AttachReqAns::decode(&mut r)?),
            C::STORE_REQ => Body::StoreReq(StoreReq::decode(&mut r)?),
            C::STORE_ANS => Body::StoreAns(StoreAns::decode(&mut r)?),
            C::FETCH_REQ => Body::FetchReq(FetchReq::decode(&mut r)?),
            C::FETCH_ANS => Body::FetchAns(FetchAns::decode(&mut r)?),
            C::FIND_REQ => Body::FindReq(FindReq::decode(&mut r)?),
            C::FIND_ANS => Body::FindAns(FindAns::decode(&mut r)?),
            C::JOIN_REQ => Body::JoinReq(JoinReq::decode(&mut r)?),
            C::JOIN_ANS => Body::JoinAns(JoinAns::decode(&mut r)?),
            C::LEAVE_REQ => Body::LeaveReq(LeaveReq::decode(&mut r)?),
            C::LEAVE_ANS => Body::LeaveAns,
            C::UPDATE_REQ => Body::UpdateReq(r.rest().to_vec()),
            C::UPDATE_ANS => Body::UpdateAns(r.rest().to_vec()),
            C::ROUTE_QUERY_REQ => Body::RouteQueryReq(RouteQueryReq::decode(&mut r)?),
            C::ROUTE_QUERY_ANS => Body::RouteQueryAns(r.rest().to_vec()),
            C::PING_REQ => Body::PingReq(PingReq::decode(&mut r)?),
            C::PING_ANS => Body::PingAns(PingAns::decode(&mut r)?),
            C::STAT_REQ => Body::StatReq(StatReq::decode(&mut r)?),
            C::STAT_ANS => Body::StatAns(StatAns::decode(&mut r)?),
            C::APP_ATTACH_REQ => Body::AppAttachReq(AppAttachReq::decode(&mut r)?),
            C::APP_ATTACH_ANS => Body::AppAttachAns(AppAttachAns::decode(&mut r)?),
            C::CONFIG_UPDATE_REQ => Body::ConfigUpdateReq(ConfigUpdateReq::decode(&mut r)?),
            C::CONFIG_UPDATE_ANS => Body::ConfigUpdateAns,
            C::ERROR => Body::Error(ErrorResponse::decode(&mut r)?),
            C(0) => {
                return Err(DecodeError::InvalidValue {
                    what: "MessageContents.message_code",
                    value: 0,
                })
            }
            code => Body::Other {
                code,
                body: r.rest().to_vec(),
            },
        };
        r.finish(code.name().unwrap_or("message_body"))?;
        Ok(b)
    }
}

impl MessageContents {
    /// Contents carrying `body` and no extensions.
    pub fn from_body(body: &Body) -> Result<MessageContents, EncodeError> {
        Ok(MessageContents {
            message_code: body.message_code(),
            message_body: body.to_bytes()?,
            extensions: Vec::new(),
        })
    }

    /// The typed view of `message_body`.
    pub fn body(&self, ctx: &DecodeContext) -> Result<Body, DecodeError> {
        Body::decode(self.message_code, &self.message_body, ctx)
    }
}
