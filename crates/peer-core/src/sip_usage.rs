//! The SIP usage of RELOAD — RFC 7904: what a peer stores for the users
//! whose phones it serves, and what a fetched registration says.
//!
//! Registration (§3): the SIP-REGISTRATION Kind is a dictionary at the
//! Resource-ID of the user's AOR, keyed by the Node-ID of the peer that
//! stores it, under USER-NODE-MATCH. This peer stores a
//! `sip_registration_route` whose destination list is itself: "to reach
//! this user, AppAttach to me" (§3.1). The phones' contacts stay with the
//! peer, which forks to them (§4.2 leaves that to the callee's peer).

mod locate;
mod registrations;
pub use locate::{Located, Locator, LocatorStats, SipPeer, ATTACH_REUSE_MS, FORK_GRACE_MS, REPLICAS_ASKED};
pub use registrations::{PublishError, Registrations, REMOVAL_LIFETIME_S};

use crate::usage::{Usage, UsageKind};
use overlay::{AccessPolicy, OverlayNode, RequestFailure, RequestId, Security, Topology};

use reload_wire::usages::{kind_id, SipRegistration};
use reload_wire::DecodeContext;
use reload_wire::{
    DataValue, Decode, Destination, DictionaryEntry, Encode, FetchAns, FetchReq, IpAddressPort, ModelSpecifier, NodeId,
    ResourceId, StoredDataSpecifier, StoredDataValue,
};

/// The Kind of the SIP usage and its policy (RFC 7904 §3.3).
pub const KINDS: &[UsageKind] = &[UsageKind {
    id: kind_id::SIP_REGISTRATION,
    name: "SIP-REGISTRATION",
    access: AccessPolicy::UserNodeMatch,
}];

/// The SIP usage as a peer runs it: the registrations it keeps for its
/// phones' users (§3) and the lookups of other users' phones (§4.2).
#[derive(Default)]
pub struct SipUsage {
    pub registrations: Registrations,
    pub locator: Locator,
}

impl<T: Topology, S: Security> Usage<T, S> for SipUsage {
    fn kinds(&self) -> &'static [UsageKind] {
        KINDS
    }

    fn on_done(
        &mut self,
        engine: &mut OverlayNode<T, S>,
        now: u64,
        request: RequestId,
        outcome: &Result<reload_wire::Body, RequestFailure>,
        responder: NodeId,
    ) -> bool {
        self.registrations.on_done(request, outcome) || self.locator.on_done(engine, now, request, outcome, responder)
    }

    fn poll_timeout(&self) -> Option<u64> {
        self.locator.poll_timeout()
    }

    fn handle_timeout(&mut self, _engine: &mut OverlayNode<T, S>, now: u64) {
        self.locator.handle_timeout(now);
    }

    fn withdraw(&mut self, engine: &mut OverlayNode<T, S>, now: u64) -> Vec<RequestId> {
        self.registrations.withdraw(engine, now)
    }
}

/// Application-ID of SIP over an AppAttach connection (RFC 6940 §14.5,
/// RFC 7904 §4.2).
pub const SIP_APPLICATION: u16 = 5060;
/// Application-ID of SIPS: SIP over TLS on the AppAttach connection, each
/// end presenting its node certificate (RFC 6940 §2: Application IDs
/// "tunneled over TLS or DTLS direct connections between nodes").
/// The one our peers offer and ask for (decision 0027).
pub const SIPS_APPLICATION: u16 = 5061;

/// Where an AppAttachAns says the peer's SIP takes connections: its first
/// candidate (decision 0007: no ICE, one host candidate).
pub fn app_address(answer: &reload_wire::AppAttachAns) -> Option<IpAddressPort> {
    answer.candidates.first().map(|c| c.addr_port.clone())
}

/// The Resource Name of a user's registration: the AOR without its scheme,
/// `user@domain` (RFC 7904 §2), which is also the user name (rfc822Name)
/// of the user's certificate, so USER-NODE-MATCH (§7.3.3) hashes the same
/// string the Store and Fetch hash. Decision 0006.
pub fn resource_name(user: &str, domain: &str) -> String {
    format!("{user}@{}", domain.to_ascii_lowercase())
}

/// The dictionary entry this peer stores for a user whose phones it
/// serves: keyed by its Node-ID, routing to itself (§3.2). `exists: false`
/// removes it (RFC 6940 §7.2).
pub fn route_to_me(me: NodeId, exists: bool) -> StoredDataValue {
    let registration = SipRegistration::Route {
        contact_prefs: Vec::new(),
        destination_list: vec![Destination::Node(me)],
    };
    StoredDataValue::Dictionary(DictionaryEntry {
        key: me.as_bytes().to_vec(),
        value: DataValue {
            exists,
            value: registration.to_bytes().unwrap_or_default(),
        },
    })
}

/// §4.2 step 1: every dictionary entry of the registration.
pub fn fetch_registrations(resource: ResourceId) -> FetchReq {
    FetchReq {
        resource,
        specifiers: vec![StoredDataSpecifier {
            kind: kind_id::SIP_REGISTRATION,
            generation: 0,
            model_specifier: ModelSpecifier::Dictionary(Vec::new()),
        }],
    }
}

/// Where a fetched registration says a user is (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// AppAttach along this destination list (its last entry is the peer).
    Route(Vec<Destination>),
    /// Look this AOR (or GRUU) up instead.
    Uri(String),
}

/// What the live entries of a FetchAns say, duplicates removed (§4.2 step
/// 3). Entries that do not decode or are removed are skipped.
pub fn targets(answer: &FetchAns) -> Vec<Target> {
    let ctx = DecodeContext::default();
    let mut out = Vec::new();
    for kr in answer
        .kind_responses
        .iter()
        .filter(|k| k.kind == kind_id::SIP_REGISTRATION)
    {
        for stored in &kr.values {
            let StoredDataValue::Dictionary(entry) = &stored.value else {
                continue;
            };
            if !entry.value.exists {
                continue;
            }
            let target = match SipRegistration::from_bytes(&entry.value.value, &ctx) {
                Ok(SipRegistration::Route { destination_list, .. }) if !destination_list.is_empty() => {
                    Target::Route(destination_list)
                }
                Ok(SipRegistration::Uri(uri)) => match String::from_utf8(uri) {
                    Ok(u) => Target::Uri(u),
                    Err(_) => continue,
                },
                _ => continue,
            };
            if !out.contains(&target) {
                out.push(target);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reload_wire::{FetchKindResponse, StoredData};

    fn stored(value: StoredDataValue) -> StoredData {
        StoredData {
            storage_time: 1,
            lifetime: 60,
            value,
            signature: reload_wire::Signature::anonymous(),
        }
    }

    #[test]
    fn a_stored_route_reads_back_as_a_target_and_removals_and_junk_are_skipped() {
        let me = NodeId::from_u128(7);
        let other = NodeId::from_u128(9);
        let junk = StoredDataValue::Dictionary(DictionaryEntry {
            key: other.as_bytes().to_vec(),
            value: DataValue {
                exists: true,
                value: vec![2, 0, 9],
            },
        });
        let answer = FetchAns {
            kind_responses: vec![FetchKindResponse {
                kind: kind_id::SIP_REGISTRATION,
                generation: 1,
                values: vec![
                    stored(route_to_me(me, true)),
                    stored(route_to_me(me, true)),
                    stored(route_to_me(other, false)),
                    stored(junk),
                ],
            }],
        };
        assert_eq!(targets(&answer), vec![Target::Route(vec![Destination::Node(me)])]);
    }

    #[test]
    fn the_resource_name_is_the_aor_without_scheme() {
        assert_eq!(resource_name("alice", "Overlay.Test"), "alice@overlay.test");
    }
}
