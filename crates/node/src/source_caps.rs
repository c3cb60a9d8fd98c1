//! Connections a listener holds per source address: each listener caps
//! how many one address may keep open (a phone or a peer needs one or
//! two), so one host cannot take all of them. An IPv6 source counts by
//! its /64, which one host gets whole.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

/// Connections open per source address; a [`SourceSlot`] gives its place
/// back when dropped.
#[derive(Default, Clone)]
pub(crate) struct SourceCaps {
    open: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

pub(crate) struct SourceSlot {
    caps: SourceCaps,
    ip: IpAddr,
}

impl SourceCaps {
    /// A place for one more connection from `ip`, if it has fewer than
    /// `limit` open.
    pub fn take(&self, ip: IpAddr, limit: usize) -> Option<SourceSlot> {
        let ip = source_of(ip);
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(SourceSlot { caps: self.clone(), ip })
    }

    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.open.lock().unwrap().len()
    }
}

/// The key a source address counts under: IPv4 as it is (an IPv4-mapped
/// IPv6 address as its IPv4), IPv6 by its /64.
fn source_of(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_source_gets_its_share_and_gives_it_back() {
        let caps = SourceCaps::default();
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        let held: Vec<SourceSlot> = (0..3).map(|_| caps.take(a, 3).expect("within the cap")).collect();
        assert!(caps.take(a, 3).is_none(), "a fourth from the same address");
        let other = caps.take(b, 3).expect("another address is not held back");
        drop(held);
        drop(other);
        assert_eq!(caps.sources(), 0, "nothing left behind");
        assert!(caps.take(a, 3).is_some());
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64() {
        let caps = SourceCaps::default();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        let _held = caps.take(one, 1).unwrap();
        assert!(caps.take(same_64, 1).is_none(), "the same /64");
        assert!(caps.take(other_64, 1).is_some());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _v4 = caps.take("192.0.2.1".parse().unwrap(), 1).unwrap();
        assert!(caps.take(mapped, 1).is_none(), "an IPv4-mapped address is its IPv4");
    }
}
