//! A second link that presents a Node-ID this peer is already linked to
//! (issue 32): the same process dialling again (a partition check, a
//! reconnect), or a second process with the same identity (a copied node
//! directory on another machine). Replacing the old link with the new
//! one, as a redial deserves, would make two such processes take turns
//! knocking each other off: a join/leave storm. So a second link for a
//! Node-ID whose link has been up a while is checked first: a Ping over
//! each, and one process answers both with the same `response_id`
//! ([`overlay::OverlayNode::instance_id`]), two processes with different
//! ones. The link that is up stays; a duplicate is refused: its requests
//! are answered Error_Forbidden with the reason, so its log says why, and
//! the link is closed. An old link that no longer answers gives way.

use overlay::RequestId;
use reload_wire::{DecodeContext, HeaderView, MessageCode};
use std::time::{Duration, Instant};

/// Whether `bytes` (a message off a link) is a request; false for a
/// response or anything that does not parse.
pub(crate) fn is_request(bytes: &[u8], ctx: &DecodeContext) -> bool {
    HeaderView::parse(bytes, ctx).is_ok_and(|v| match v.payload() {
        [a, b, ..] => MessageCode(u16::from_be_bytes([*a, *b])).is_request(),
        _ => false,
    })
}

/// A second link for a Node-ID whose link is younger than this is a
/// simultaneous dial (both ends dialled at once), which the usual
/// tie-break settles without a check.
pub(crate) const CHECK_LINKS_OLDER_THAN: Duration = Duration::from_secs(5);
/// How long a check waits for both Pings to be answered.
pub(crate) const CHECK_TIMEOUT: Duration = Duration::from_secs(4);
/// How long a refused duplicate's link stays open so that the requests
/// it sends get the refusal, not silence.
pub(crate) const REFUSING_FOR: Duration = Duration::from_secs(2);
/// Requests of the new link held while the check runs.
pub(crate) const HELD_REQUESTS: usize = 16;

/// What a check has learnt of one link's Ping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Waiting,
    /// The PingAns `response_id`.
    Instance(u64),
    Failed,
}

/// What to do with the two links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
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

/// The decision from the two Pings' answers so far; `timed_out` once
/// [`CHECK_TIMEOUT`] has passed (then a missing answer counts as failed).
pub(crate) fn verdict(old: Answer, new: Answer, timed_out: bool) -> Verdict {
    let settle = |a: Answer| match a {
        Answer::Waiting if timed_out => Answer::Failed,
        other => other,
    };
    match (settle(old), settle(new)) {
        (Answer::Instance(a), Answer::Instance(b)) if a == b => Verdict::SameProcess,
        (Answer::Instance(old), Answer::Instance(new)) => Verdict::Duplicate { old, new },
        (_, Answer::Failed) => Verdict::NewGone,
        (Answer::Failed, Answer::Instance(_)) => Verdict::OldGone,
        _ => Verdict::Wait,
    }
}

/// A check under way, or a refused duplicate's link waiting to close.
pub(crate) struct Check<L> {
    /// The new link's handle, kept out of the link table meanwhile.
    pub new: L,
    pub new_link: u64,
    /// The new link was dialled to a bootstrap address.
    pub bootstrap: bool,
    pub ping_old: RequestId,
    pub ping_new: RequestId,
    pub old: Answer,
    pub new_answer: Answer,
    pub deadline: Instant,
    /// Requests that came over the new link meanwhile.
    pub held: Vec<Vec<u8>>,
    /// The verdict was Duplicate: requests get the refusal until then.
    pub refusing_until: Option<Instant>,
    /// The refusal's reason.
    pub refusal: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_instance_is_one_process_two_are_a_duplicate() {
        use Answer::*;
        assert_eq!(verdict(Instance(7), Instance(7), false), Verdict::SameProcess);
        assert_eq!(
            verdict(Instance(7), Instance(9), false),
            Verdict::Duplicate { old: 7, new: 9 }
        );
        assert_eq!(verdict(Waiting, Instance(9), false), Verdict::Wait);
        assert_eq!(verdict(Instance(7), Waiting, false), Verdict::Wait);
        assert_eq!(
            verdict(Waiting, Instance(9), true),
            Verdict::OldGone,
            "a half-open old link"
        );
        assert_eq!(verdict(Failed, Instance(9), false), Verdict::OldGone);
        assert_eq!(verdict(Instance(7), Waiting, true), Verdict::NewGone);
        assert_eq!(verdict(Waiting, Waiting, true), Verdict::NewGone);
        assert_eq!(verdict(Instance(7), Failed, false), Verdict::NewGone);
    }
}
