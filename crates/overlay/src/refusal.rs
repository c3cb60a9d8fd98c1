//! Why a node refuses a request: one typed reason per refusal, mapped
//! here, once, to its RELOAD error code (RFC 6940 §6.3.3.1) and to the
//! `error_info` it carries. The engine and its storage return these; the
//! wire sees an [`ErrorResponse`].

use crate::configuration::ConfigRefusal;
use crate::storage::Exceeded;
use reload_wire::storage::UnknownKinds;
use reload_wire::{DecodeError, Encode, ErrorCode, ErrorResponse, KindId, StoreAns};

/// Where a critical forwarding option that is not understood was met
/// (§6.3.2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CriticalOption {
    /// FORWARD_CRITICAL, at a node that would forward the message.
    Forward,
    /// DESTINATION_CRITICAL, at the message's destination.
    Destination,
}

/// The storage request a Kind appears twice in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageMethod {
    Store,
    Find,
}

/// Why this node refuses a request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    // The message itself (§6.1, §6.3).
    #[error("undecodable message")]
    Undecodable,
    /// The requester runs an older configuration document (§6.3.2.1).
    #[error("configuration sequence differs")]
    ConfigTooOld,
    /// The requester runs a newer configuration document (§6.3.2.1).
    #[error("configuration sequence differs")]
    ConfigTooNew,
    #[error("a {} forwarding option is not understood", match .0 { CriticalOption::Forward => "FORWARD_CRITICAL", CriticalOption::Destination => "DESTINATION_CRITICAL" })]
    UnsupportedForwardingOption(CriticalOption),
    #[error("bad message signature")]
    BadSignature,
    #[error("TTL above initial-ttl")]
    TtlAboveInitial,
    #[error("TTL exceeded")]
    TtlExceeded,
    /// §13.6.5: a Destination List with duplicates is a loop attempt.
    #[error("duplicate destination")]
    DuplicateDestination,
    /// §6.3.2: the answer would exceed the request's max_response_length.
    #[error("response longer than max_response_length")]
    ResponseTooLong,

    // The request's body and method.
    /// Kinds this overlay does not define (§7.4.1.1: the info lists them).
    #[error("unknown Kinds")]
    UnknownKinds(Vec<KindId>),
    #[error("{0}")]
    MalformedBody(DecodeError),
    #[error("not a request this node handles")]
    NotHandled,
    /// §6.4.2.1-2: Join and Leave only over the sender's own link.
    #[error("Join and Leave must come over the sender's own link")]
    NotDirect,
    #[error("not responsible for this Resource-ID")]
    NotResponsible,
    #[error("no such application on this node")]
    NoSuchApplication,
    /// §7.4.1.1: replica Stores come from the replica set.
    #[error("replica Store from a node outside the replica set")]
    OutsideReplicaSet,
    /// The topology plugin refused a request of its own (Join, Leave,
    /// Update, RouteQuery) with `code`.
    #[error("{what} refused")]
    Topology { what: &'static str, code: ErrorCode },
    /// A ConfigUpdate that was not taken (§6.5.4).
    #[error(transparent)]
    Configuration(ConfigRefusal),

    // Storage (§7).
    #[error("a Kind appears twice in the {}", match .0 { StorageMethod::Store => "StoreReq", StorageMethod::Find => "FindReq" })]
    KindTwice(StorageMethod),
    #[error("replica Store with generation 0")]
    ReplicaGenerationZero,
    /// §7.4.1.1: the info is a StoreAns with the current generations.
    #[error("generation counter too low")]
    GenerationTooLow(StoreAns),
    #[error("StoreReq signer may not write this Kind here")]
    RequestSignerMayNotWrite,
    #[error("storage_time is not newer than the stored value")]
    DataTooOld,
    #[error("more values than the Kind's max-count")]
    TooManyValues,
    #[error("{}", .0.reason())]
    Quota(Exceeded),
    #[error("value does not match the Kind's data model")]
    WrongDataModel,
    #[error("stored values must be signed")]
    Unsigned,
    #[error("value larger than the Kind's max-size")]
    ValueTooLarge,
    #[error("array index beyond the Kind's max-count")]
    IndexBeyondMaxCount,
    #[error("bad value signature")]
    BadValueSignature,
    #[error("value signer may not write this Kind here")]
    ValueSignerMayNotWrite,
}

impl Refusal {
    /// The error code §6.3.3.1 gives this refusal.
    pub fn error_code(&self) -> ErrorCode {
        use Refusal::*;
        match self {
            Undecodable
            | DuplicateDestination
            | MalformedBody(_)
            | NotHandled
            | KindTwice(_)
            | ReplicaGenerationZero
            | WrongDataModel => ErrorCode::INVALID_MESSAGE,
            ConfigTooOld => ErrorCode::CONFIG_TOO_OLD,
            ConfigTooNew => ErrorCode::CONFIG_TOO_NEW,
            UnsupportedForwardingOption(_) => ErrorCode::UNSUPPORTED_FORWARDING_OPTION,
            BadSignature
            | NotDirect
            | OutsideReplicaSet
            | RequestSignerMayNotWrite
            | Unsigned
            | BadValueSignature
            | ValueSignerMayNotWrite => ErrorCode::FORBIDDEN,
            TtlAboveInitial | TtlExceeded => ErrorCode::TTL_EXCEEDED,
            ResponseTooLong => ErrorCode::INCOMPATIBLE_WITH_OVERLAY,
            UnknownKinds(_) => ErrorCode::UNKNOWN_KIND,
            NotResponsible | NoSuchApplication => ErrorCode::NOT_FOUND,
            Topology { code, .. } => *code,
            Configuration(refusal) => refusal.error_code(),
            GenerationTooLow(_) => ErrorCode::GENERATION_COUNTER_TOO_LOW,
            DataTooOld => ErrorCode::DATA_TOO_OLD,
            TooManyValues | Quota(_) | ValueTooLarge | IndexBeyondMaxCount => ErrorCode::DATA_TOO_LARGE,
        }
    }

    /// The error_info: the structure §7.4.1.1 asks for where it asks for
    /// one, else the reason in words.
    pub fn error_info(&self) -> Vec<u8> {
        match self {
            Refusal::UnknownKinds(kinds) => UnknownKinds(kinds.clone()).to_bytes().unwrap_or_default(),
            Refusal::GenerationTooLow(answer) => answer.to_bytes().unwrap_or_default(),
            other => other.to_string().into_bytes(),
        }
    }
}

impl From<Refusal> for ErrorResponse {
    fn from(refusal: Refusal) -> Self {
        ErrorResponse::new(refusal.error_code(), refusal.error_info())
    }
}

impl From<ConfigRefusal> for Refusal {
    fn from(refusal: ConfigRefusal) -> Self {
        Refusal::Configuration(refusal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_refusal_carries_its_code_and_a_reason_a_reader_understands() {
        let answer = ErrorResponse::from(Refusal::UnsupportedForwardingOption(CriticalOption::Destination));
        assert_eq!(answer.error_code, ErrorCode::UNSUPPORTED_FORWARDING_OPTION);
        assert_eq!(
            answer.error_info,
            b"a DESTINATION_CRITICAL forwarding option is not understood".to_vec()
        );
        let answer = ErrorResponse::from(Refusal::Quota(Exceeded::Total));
        assert_eq!(answer.error_code, ErrorCode::DATA_TOO_LARGE);
        assert_eq!(answer.error_info, Exceeded::Total.reason().as_bytes().to_vec());
        let kinds = ErrorResponse::from(Refusal::UnknownKinds(vec![7, 9]));
        assert_eq!(kinds.error_code, ErrorCode::UNKNOWN_KIND);
        assert_eq!(kinds.error_info, UnknownKinds(vec![7, 9]).to_bytes().unwrap());
        let join = Refusal::Topology {
            what: "join",
            code: ErrorCode::NOT_FOUND,
        };
        assert_eq!(ErrorResponse::from(join).error_info, b"join refused".to_vec());
    }
}
