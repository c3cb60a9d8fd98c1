//! The simulated network: addresses, per-pair latency, loss.

use reload_wire::{IpAddressPort, NodeId};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

/// Index of a simulated node; never reused, so a late message for a node
/// that has gone cannot reach its successor in the slot.
pub type Host = u32;

/// The address of a simulated host: 10.0.0.0/8 numbered by host index.
pub fn address_of(host: Host) -> IpAddressPort {
    IpAddressPort::Ip(socket_of(host))
}

/// The same address as a socket address.
pub fn socket_of(host: Host) -> SocketAddr {
    let ip = Ipv4Addr::from(0x0a00_0000 | (host & 0x00ff_ffff));
    SocketAddr::V4(SocketAddrV4::new(ip, reload_wire::pcap::RELOAD_PORT))
}

pub fn host_of(address: &IpAddressPort) -> Option<Host> {
    match address {
        IpAddressPort::Ip(SocketAddr::V4(a)) => Some(u32::from(*a.ip()) & 0x00ff_ffff),
        _ => None,
    }
}

/// The Node-ID of a simulated host: 96 random bits on top, which place it
/// on the ring, and the host's index in the low 32 bits, so that the
/// simulator finds the host of a Node-ID without a lookup table and no
/// two hosts ever share one.
pub fn node_id_of(host: Host, random: u128) -> NodeId {
    NodeId::from_u128((random & !u128::from(u32::MAX)) | u128::from(host))
}

/// The host whose Node-ID this is, if it is one [`node_id_of`] made.
pub fn host_in(id: &NodeId) -> Host {
    // The low 32 bits of the 128, as `node_id_of` put them there.
    match <[u8; 16]>::try_from(id.as_bytes()) {
        Ok(bytes) => u128::from_be_bytes(bytes) as Host,
        Err(_) => Host::MAX,
    }
}

/// One-way latency between two hosts: log-normal around `median_ms`,
/// fixed per pair (the same path every time, so a link delivers in order,
/// as TCP does), and never below [`LatencyModel::floor_ms`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    pub median_ms: f64,
    pub sigma: f64,
}

impl Default for LatencyModel {
    fn default() -> Self {
        LatencyModel {
            median_ms: 40.0,
            sigma: 0.5,
        }
    }
}

/// How many standard deviations below the median the latency
/// distribution is cut (decision 0017).
const FLOOR_SIGMAS: f64 = 3.0;

fn mix(mut x: u64) -> u64 {
    // splitmix64 finaliser
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

impl LatencyModel {
    pub fn one_way_ms(&self, seed: u64, a: Host, b: Host) -> u64 {
        let (lo, hi) = if a < b { (a, b) } else { (b, a) };
        let h1 = mix(seed ^ ((lo as u64) << 32 | hi as u64));
        let h2 = mix(h1);
        let u1 = ((h1 >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let u2 = (h2 >> 11) as f64 / (1u64 << 53) as f64;
        // Box-Muller: a standard normal from two uniforms.
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let ms = self.median_ms * (self.sigma * z).exp();
        // At or above the cut, `ms` is at least the floor: only the few
        // pairs drawn below it need the floor worked out.
        if self.sigma >= 0.0 && z >= -FLOOR_SIGMAS {
            (ms.round() as u64).max(1)
        } else {
            (ms.round() as u64).max(self.floor_ms())
        }
    }

    /// The least one-way latency: the log-normal cut [`FLOOR_SIGMAS`]
    /// standard deviations below its median, in whole milliseconds and
    /// never under one. A pair drawn below it (0.13 % of pairs) gets the
    /// floor. Every cross-peer event is at least this far after its cause,
    /// so the simulator's steps are this long (decision 0011): 8 ms for
    /// the default 40 ms median, where a floor far below anything drawn
    /// would only cut the steps short.
    pub fn floor_ms(&self) -> u64 {
        let floor = self.median_ms * (-FLOOR_SIGMAS * self.sigma).exp();
        if floor.is_finite() {
            (floor as u64).max(1)
        } else {
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_id_names_its_host_and_keeps_the_random_top() {
        for (h, r) in [
            (0, 0u128),
            (7, u128::MAX),
            (0x00ab_cdef, 0x1234_5678_9abc_def0_1122_3344_5566_7788),
        ] {
            let id = node_id_of(h, r);
            assert_eq!(host_in(&id), h);
            assert_eq!(id.as_bytes()[..12], r.to_be_bytes()[..12]);
        }
        let long = NodeId::from_slice(&[1; 20]).expect("20 bytes");
        assert_eq!(host_in(&long), Host::MAX, "not a simulated Node-ID");
    }

    #[test]
    fn addresses_round_trip() {
        for h in [0, 1, 77, 0x00ab_cdef] {
            assert_eq!(host_of(&address_of(h)), Some(h));
        }
    }

    #[test]
    fn latency_is_symmetric_fixed_and_near_the_median() {
        let m = LatencyModel::default();
        assert_eq!(m.one_way_ms(7, 3, 9), m.one_way_ms(7, 9, 3));
        let mut v: Vec<u64> = (0..2001).map(|i| m.one_way_ms(7, i, i + 5000)).collect();
        v.sort();
        let median = v[1000] as f64;
        assert!((35.0..=45.0).contains(&median), "median {median}");
        assert!(v[0] >= m.floor_ms());
    }

    #[test]
    fn the_floor_is_three_deviations_below_the_median() {
        assert_eq!(LatencyModel::default().floor_ms(), 8, "40 ms * e^-1.5 = 8.9 ms");
        let tight = LatencyModel {
            median_ms: 40.0,
            sigma: 0.0,
        };
        assert_eq!(tight.floor_ms(), 40);
        assert_eq!(tight.one_way_ms(1, 2, 3), 40);
        let near = LatencyModel {
            median_ms: 1.0,
            sigma: 0.5,
        };
        assert_eq!(near.floor_ms(), 1, "never below a millisecond");
        // Of many pairs, about 0.13 % sit on the floor.
        let m = LatencyModel::default();
        let floored = (0..100_000)
            .filter(|&i| m.one_way_ms(3, i, i + 1) == m.floor_ms())
            .count();
        assert!((40..=300).contains(&floored), "{floored} of 100000 on the floor");
    }
}
