//! What every listener shares: a cap on the connections it holds in all
//! and per source address (a phone or a peer needs one or two), so one
//! host cannot take all of them, and an accept that pauses after an error
//! instead of spinning. An IPv6 source counts by its /64, which one host
//! gets whole.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// A listener's caps: `total` connections, `per_source` from one address.
#[derive(Clone)]
pub(crate) struct ConnectionCaps {
    total: Arc<Semaphore>,
    sources: SourceCaps,
    per_source: usize,
}

/// Which cap turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    Total,
    Source,
}

/// One connection's place under [`ConnectionCaps`], given back when dropped.
pub(crate) struct Admitted {
    _place: OwnedSemaphorePermit,
    _slot: SourceSlot,
}

impl ConnectionCaps {
    pub fn new(total: usize, per_source: usize) -> Self {
        ConnectionCaps {
            total: Arc::new(Semaphore::new(total)),
            sources: SourceCaps::default(),
            per_source,
        }
    }

    /// A place for one more connection from `ip`, or the cap it hit.
    pub fn admit(&self, ip: IpAddr) -> Result<Admitted, Full> {
        let place = self.total.clone().try_acquire_owned().map_err(|_| Full::Total)?;
        let slot = self.sources.take(ip, self.per_source).ok_or(Full::Source)?;
        Ok(Admitted {
            _place: place,
            _slot: slot,
        })
    }
}

/// The next connection; after a failed accept (out of file descriptors,
/// say) a pause rather than a busy loop.
pub(crate) async fn accept(listener: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(e) => {
                tracing::debug!("accept on {:?} failed: {e}", listener.local_addr().ok());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

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
        let listener = ConnectionCaps::new(2, 1);
        let a = listener.admit("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(listener.admit("192.0.2.1".parse().unwrap()).err(), Some(Full::Source));
        let _b = listener.admit("192.0.2.2".parse().unwrap()).unwrap();
        assert_eq!(listener.admit("192.0.2.3".parse().unwrap()).err(), Some(Full::Total));
        drop(a);
        assert!(listener.admit("192.0.2.1".parse().unwrap()).is_ok(), "places come back");
        assert!(caps.take(same_64, 1).is_none(), "the same /64");
        assert!(caps.take(other_64, 1).is_some());
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        let _v4 = caps.take("192.0.2.1".parse().unwrap(), 1).unwrap();
        assert!(caps.take(mapped, 1).is_none(), "an IPv4-mapped address is its IPv4");
    }
}
