//! The sockets of multicast bootstrap on the LAN; the datagrams and the
//! rounds are the peer core's ([`peer_core::discovery`]).

pub use peer_core::discovery::{Datagram, MAX_DATAGRAM};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The two sockets of multicast bootstrap: one in the group, which hears
/// DISCOVERs, and one unicast, which sends DISCOVERs and HEREs and hears
/// HEREs.
pub struct Sockets {
    pub group: tokio::net::UdpSocket,
    pub unicast: tokio::net::UdpSocket,
    pub group_addr: SocketAddr,
}

/// Opens the sockets on the interface of `local` (the address the peer
/// takes links on; an unspecified address leaves the choice to the
/// kernel). Several peers on one host share the group port.
pub fn open(group: SocketAddr, local: IpAddr) -> std::io::Result<Sockets> {
    use socket2::{Domain, Protocol, Socket, Type};
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, why.to_string());
    if !group.ip().is_multicast() {
        return Err(invalid("the multicast-bootstrap address is not a multicast group"));
    }
    let domain = Domain::for_address(group);
    let socket = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&group.into())?;
    let unicast = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    unicast.set_nonblocking(true)?;
    match (group.ip(), local) {
        (IpAddr::V4(g), IpAddr::V4(l)) => {
            socket.join_multicast_v4(&g, &l)?;
            unicast.set_multicast_if_v4(&l)?;
            unicast.set_multicast_loop_v4(true)?;
            unicast.bind(&SocketAddr::new(IpAddr::V4(l), 0).into())?;
        }
        (IpAddr::V4(g), IpAddr::V6(_)) => {
            socket.join_multicast_v4(&g, &Ipv4Addr::UNSPECIFIED)?;
            unicast.set_multicast_loop_v4(true)?;
            unicast.bind(&SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), 0).into())?;
        }
        (IpAddr::V6(g), _) => {
            socket.join_multicast_v6(&g, 0)?;
            unicast.set_multicast_loop_v6(true)?;
            unicast.bind(&SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0).into())?;
        }
    }
    Ok(Sockets {
        group: tokio::net::UdpSocket::from_std(socket.into())?,
        unicast: tokio::net::UdpSocket::from_std(unicast.into())?,
        group_addr: group,
    })
}
