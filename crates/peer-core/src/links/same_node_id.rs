//! A second link that presents a Node-ID this peer is already linked to
//! (issue 32): the same process dialling again (a partition check, a
//! reconnect), or a second process with the same identity (a copied node
//! directory on another machine). Replacing the old link with the new
//! one, as a redial deserves, would make two such processes take turns
//! knocking each other off: a join/leave storm. So a second link for a
//! Node-ID whose link has been up a while is checked first: two Pings over
//! the old link and one over the new. One process of ours answers all
//! three with the same `response_id` ([`overlay::OverlayNode::instance_id`]),
//! two processes with two values. A peer of another implementation may
//! draw a new `response_id` for every Ping (RFC 6940 §6.5.3 allows it): its
//! two answers on the old link differ, nothing can be told, and the new
//! link is taken as a redial. The link that is up stays; a duplicate is
//! refused: its requests are answered Error_Forbidden with the reason, so
//! its log says why, and the link is closed. An old link that no longer
//! answers gives way (one already reported silent gives way at once).

use overlay::RequestId;
use reload_wire::{DecodeContext, HeaderView, MessageCode};

/// Whether `bytes` (a message off a link) is a request; false for a
/// response or anything that does not parse.
pub fn is_request(bytes: &[u8], ctx: &DecodeContext) -> bool {
    HeaderView::parse(bytes, ctx).is_ok_and(|v| match v.payload() {
        [a, b, ..] => MessageCode(u16::from_be_bytes([*a, *b])).is_request(),
        _ => false,
    })
}

/// A second link for a Node-ID whose link is younger than this (ms) is a
/// simultaneous dial (both ends dialled at once), which the usual
/// tie-break settles without a check.
pub const CHECK_LINKS_OLDER_THAN_MS: u64 = 5_000;
/// How long a check waits for both Pings to be answered (ms).
pub const CHECK_TIMEOUT_MS: u64 = 4_000;
/// How long a refused duplicate's link stays open so that the requests
/// it sends get the refusal, not silence (ms).
pub const REFUSING_FOR_MS: u64 = 2_000;
/// Requests of the new link held while the check runs.
pub const HELD_REQUESTS: usize = 16;

/// What a check has learnt of one link's Ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    Waiting,
    /// The PingAns `response_id`.
    Instance(u64),
    Failed,
}

/// What to do with the two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Wait,
    /// One process: settle as a redial or a simultaneous dial.
    SameProcess,
    /// Two processes share the Node-ID: keep the old link, refuse the new.
    Duplicate {
        old: u64,
        new: u64,
    },
    /// The old link no longer answers: the new one replaces it.
    OldGone,
    /// The new link does not answer: drop it.
    NewGone,
}

/// The decision from the Pings' answers so far (two over the old link,
/// one over the new); `timed_out` once [`CHECK_TIMEOUT`] has passed (then
/// a missing answer counts as failed).
pub fn verdict(old: [Answer; 2], new: Answer, timed_out: bool) -> Verdict {
    use Answer::*;
    let settle = |a: Answer| match a {
        Waiting if timed_out => Failed,
        other => other,
    };
    match (settle(old[0]), settle(old[1]), settle(new)) {
        (_, _, Failed) => Verdict::NewGone,
        (Failed, Failed, Instance(_)) => Verdict::OldGone,
        (Instance(a), Instance(b), Instance(n)) if a == b && a != n => Verdict::Duplicate { old: a, new: n },
        // One process, or a peer that answers each Ping with a new value.
        (Instance(_), Instance(_), Instance(_)) => Verdict::SameProcess,
        (Instance(_), Failed, Instance(_)) | (Failed, Instance(_), Instance(_)) => Verdict::SameProcess,
        _ => Verdict::Wait,
    }
}

/// A check under way, or a refused duplicate's link waiting to close.
pub struct Check<L> {
    /// The new link, kept out of the link table meanwhile.
    pub new: L,
    pub ping_old: [RequestId; 2],
    pub ping_new: RequestId,
    pub old: [Answer; 2],
    pub new_answer: Answer,
    pub deadline: u64,
    /// Requests that came over the new link meanwhile.
    pub held: Vec<Vec<u8>>,
    /// The verdict was Duplicate: requests get the refusal until then.
    pub refusing_until: Option<u64>,
    /// The refusal's reason.
    pub refusal: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_is_one_process_two_are_a_duplicate() {
        use Answer::*;
        let old = |a| [Instance(a), Instance(a)];
        assert_eq!(verdict(old(7), Instance(7), false), Verdict::SameProcess);
        assert_eq!(
            verdict(old(7), Instance(9), false),
            Verdict::Duplicate { old: 7, new: 9 }
        );
        assert_eq!(
            verdict([Instance(7), Instance(8)], Instance(9), false),
            Verdict::SameProcess,
            "a peer that draws a response_id per Ping cannot be told apart"
        );
        assert_eq!(verdict([Waiting, Instance(7)], Instance(9), false), Verdict::Wait);
        assert_eq!(verdict(old(7), Waiting, false), Verdict::Wait);
        assert_eq!(
            verdict([Waiting; 2], Instance(9), true),
            Verdict::OldGone,
            "a half-open old link"
        );
        assert_eq!(verdict([Failed; 2], Instance(9), false), Verdict::OldGone);
        assert_eq!(verdict([Instance(7), Failed], Instance(9), false), Verdict::SameProcess);
        assert_eq!(verdict(old(7), Waiting, true), Verdict::NewGone);
        assert_eq!(verdict([Waiting; 2], Waiting, true), Verdict::NewGone);
        assert_eq!(verdict(old(7), Failed, false), Verdict::NewGone);
    }
}
