//! Joining the overlay and staying in it: the bootstrap addresses tried in
//! turn (§11.4), the back-off of a node that keeps losing the overlay
//! (§10.7.4: rejoining), and the partition check through a bootstrap
//! address (§10.7.4.4).

use super::*;

/// The joining state of one node.
#[derive(Debug, Default)]
pub(super) struct Joining {
    pub(super) bootstraps: Vec<IpAddressPort>,
    pub(super) next_bootstrap: usize,
    /// Times in a row the node lost the overlay without staying joined
    /// for [`STABLE_MS`] in between.
    pub(super) rejoins_in_a_row: u32,
    /// When a delayed rejoin is due.
    pub(super) rejoin_at: Option<u64>,
    /// When the node last joined, while it is joined.
    pub(super) joined_at: Option<u64>,
    pub(super) bootstrap_pending: bool,
    pub(super) probe: Option<BootstrapProbe>,
}

impl Joining {
    /// The node joined (again) at `now`.
    pub(super) fn joined(&mut self, now: u64) {
        self.joined_at = Some(now);
        self.rejoin_at = None;
    }

    /// The node lost the overlay at `now`: how long to wait before
    /// rejoining. A node that keeps losing it as soon as it (re)joins (a
    /// bootstrap peer that drops it, a second process with its Node-ID)
    /// backs off instead of rejoining in a tight loop.
    pub(super) fn lost(&mut self, now: u64) -> u64 {
        if self.joined_at.is_some_and(|t| now.saturating_sub(t) >= STABLE_MS) {
            self.rejoins_in_a_row = 0;
        }
        self.joined_at = None;
        let after_ms = rejoin_delay_ms(self.rejoins_in_a_row);
        self.rejoins_in_a_row = self.rejoins_in_a_row.saturating_add(1);
        if after_ms > 0 {
            self.rejoin_at = Some(now + after_ms);
        }
        after_ms
    }
}

/// A partition check (§10.7.4.4) waiting for its link to a bootstrap
/// address; once the link is up its Ping is an ordinary outstanding
/// request.
#[derive(Debug)]
pub(super) struct BootstrapProbe {
    pub(super) token: u64,
    pub(super) target: Destination,
    pub(super) since: u64,
}
