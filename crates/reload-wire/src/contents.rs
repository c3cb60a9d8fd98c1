//! Message contents — RFC 6940 §6.3.3: message code, body, extensions;
//! and the error response of §6.3.3.1.

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;
use std::fmt;

/// `uint16 message_code` — RFC 6940 §6.3.3, registry in §14.8.
/// Requests are odd; the matching answer is the request code plus one.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageCode(pub u16);

macro_rules! message_codes {
    ($($name:ident = $v:expr, $s:expr;)*) => {
        impl MessageCode {
            $(pub const $name: MessageCode = MessageCode($v);)*

            /// The registry name (§14.8), e.g. `store_req`.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some($s),)*
                    _ => None,
                }
            }
        }
    };
}

message_codes! {
    PROBE_REQ = 0x01, "probe_req";
    PROBE_ANS = 0x02, "probe_ans";
    ATTACH_REQ = 0x03, "attach_req";
    ATTACH_ANS = 0x04, "attach_ans";
    STORE_REQ = 0x07, "store_req";
    STORE_ANS = 0x08, "store_ans";
    FETCH_REQ = 0x09, "fetch_req";
    FETCH_ANS = 0x0a, "fetch_ans";
    FIND_REQ = 0x0d, "find_req";
    FIND_ANS = 0x0e, "find_ans";
    JOIN_REQ = 0x0f, "join_req";
    JOIN_ANS = 0x10, "join_ans";
    LEAVE_REQ = 0x11, "leave_req";
    LEAVE_ANS = 0x12, "leave_ans";
    UPDATE_REQ = 0x13, "update_req";
    UPDATE_ANS = 0x14, "update_ans";
    ROUTE_QUERY_REQ = 0x15, "route_query_req";
    ROUTE_QUERY_ANS = 0x16, "route_query_ans";
    PING_REQ = 0x17, "ping_req";
    PING_ANS = 0x18, "ping_ans";
    STAT_REQ = 0x19, "stat_req";
    STAT_ANS = 0x1a, "stat_ans";
    APP_ATTACH_REQ = 0x1d, "app_attach_req";
    APP_ATTACH_ANS = 0x1e, "app_attach_ans";
    CONFIG_UPDATE_REQ = 0x21, "config_update_req";
    CONFIG_UPDATE_ANS = 0x22, "config_update_ans";
    EXP_A_REQ = 0x23, "exp_a_req";
    EXP_A_ANS = 0x24, "exp_a_ans";
    EXP_B_REQ = 0x25, "exp_b_req";
    EXP_B_ANS = 0x26, "exp_b_ans";
    ERROR = 0xffff, "error";
}

impl MessageCode {
    /// Requests and answers share 0x1..=0x7fff; requests are odd.
    pub fn is_request(self) -> bool {
        (0x0001..=0x7fff).contains(&self.0) && self.0 % 2 == 1
    }
    pub fn is_answer(self) -> bool {
        self == MessageCode::ERROR || ((0x0001..=0x7fff).contains(&self.0) && self.0.is_multiple_of(2))
    }
    /// The success answer to this request (§6.3.3.1: the next code up).
    pub fn answer(self) -> Option<MessageCode> {
        self.is_request().then_some(MessageCode(self.0 + 1))
    }
}

impl fmt::Debug for MessageCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "MessageCode({:#06x})", self.0),
        }
    }
}

/// `MessageExtension` — RFC 6940 §6.3.3.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExtension {
    pub extension_type: u16,
    pub critical: bool,
    pub extension_contents: Vec<u8>,
}

impl Encode for MessageExtension {
    fn encode(&self, w: &mut Writer) {
        w.u16(self.extension_type);
        w.boolean(self.critical);
        w.opaque(
            LenPrefix::U32,
            "MessageExtension.extension_contents",
            &self.extension_contents,
        );
    }
}

impl Decode for MessageExtension {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(MessageExtension {
            extension_type: r.u16("MessageExtension.type")?,
            critical: r.boolean("MessageExtension.critical")?,
            extension_contents: r.opaque(LenPrefix::U32, "MessageExtension.extension_contents")?,
        })
    }
}

/// `MessageContents` — RFC 6940 §6.3.3.
///
/// The body is kept as the bytes on the wire: signatures cover exactly
/// these bytes (§6.3.4), and a forwarding peer never needs it parsed.
/// [`crate::Body`] gives the typed view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageContents {
    pub message_code: MessageCode,
    pub message_body: Vec<u8>,
    pub extensions: Vec<MessageExtension>,
}

impl Encode for MessageContents {
    fn encode(&self, w: &mut Writer) {
        w.u16(self.message_code.0);
        w.opaque(LenPrefix::U32, "MessageContents.message_body", &self.message_body);
        w.list(LenPrefix::U32, "MessageContents.extensions", &self.extensions);
    }
}

impl Decode for MessageContents {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let message_code = MessageCode(r.u16("MessageContents.message_code")?);
        if message_code.0 == 0 {
            return Err(DecodeError::InvalidValue {
                what: "MessageContents.message_code",
                value: 0,
            });
        }
        Ok(MessageContents {
            message_code,
            message_body: r.opaque(LenPrefix::U32, "MessageContents.message_body")?,
            extensions: r.list(LenPrefix::U32, "MessageContents.extensions", MessageExtension::decode)?,
        })
    }
}

/// `uint16 error_code` — RFC 6940 §6.3.3.1, registry in §14.9.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ErrorCode(pub u16);

macro_rules! error_codes {
    ($($name:ident = $v:expr, $s:expr;)*) => {
        impl ErrorCode {
            $(pub const $name: ErrorCode = ErrorCode($v);)*
            /// Every error code the RFC defines.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode($v)),*];

            /// The registry name (§14.9), e.g. `Error_Not_Found`.
            pub fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($v => Some($s),)*
                    _ => None,
                }
            }
        }
    };
}

error_codes! {
    FORBIDDEN = 0x02, "Error_Forbidden";
    NOT_FOUND = 0x03, "Error_Not_Found";
    REQUEST_TIMEOUT = 0x04, "Error_Request_Timeout";
    GENERATION_COUNTER_TOO_LOW = 0x05, "Error_Generation_Counter_Too_Low";
    INCOMPATIBLE_WITH_OVERLAY = 0x06, "Error_Incompatible_with_Overlay";
    UNSUPPORTED_FORWARDING_OPTION = 0x07, "Error_Unsupported_Forwarding_Option";
    DATA_TOO_LARGE = 0x08, "Error_Data_Too_Large";
    DATA_TOO_OLD = 0x09, "Error_Data_Too_Old";
    TTL_EXCEEDED = 0x0a, "Error_TTL_Exceeded";
    MESSAGE_TOO_LARGE = 0x0b, "Error_Message_Too_Large";
    UNKNOWN_KIND = 0x0c, "Error_Unknown_Kind";
    UNKNOWN_EXTENSION = 0x0d, "Error_Unknown_Extension";
    RESPONSE_TOO_LARGE = 0x0e, "Error_Response_Too_Large";
    CONFIG_TOO_OLD = 0x0f, "Error_Config_Too_Old";
    CONFIG_TOO_NEW = 0x10, "Error_Config_Too_New";
    IN_PROGRESS = 0x11, "Error_In_Progress";
    EXP_A = 0x12, "Error_Exp_A";
    EXP_B = 0x13, "Error_Exp_B";
    INVALID_MESSAGE = 0x14, "Error_Invalid_Message";
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ErrorCode({:#06x})", self.0),
        }
    }
}

/// `ErrorResponse` — RFC 6940 §6.3.3.1, the body of message code 0xffff.
/// `error_info` is UTF-8 text unless the error defines otherwise
/// (Error_Unknown_Kind and Error_Generation_Counter_Too_Low do, §7.4.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorResponse {
    pub error_code: ErrorCode,
    pub error_info: Vec<u8>,
}

impl ErrorResponse {
    pub fn new(error_code: ErrorCode, info: impl Into<Vec<u8>>) -> Self {
        ErrorResponse {
            error_code,
            error_info: info.into(),
        }
    }
}

impl Encode for ErrorResponse {
    fn encode(&self, w: &mut Writer) {
        w.u16(self.error_code.0);
        w.opaque(LenPrefix::U16, "ErrorResponse.error_info", &self.error_info);
    }
}

impl Decode for ErrorResponse {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(ErrorResponse {
            error_code: ErrorCode(r.u16("ErrorResponse.error_code")?),
            error_info: r.opaque(LenPrefix::U16, "ErrorResponse.error_info")?,
        })
    }
}
