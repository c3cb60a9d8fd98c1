//! `IpAddressPort` — RFC 6940 §6.3.1.1.

use crate::codec::{Decode, Encode, LenPrefix, Reader, Writer};
use crate::error::DecodeError;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// `enum { invalidAddressType(0), ipv4_address(1), ipv6_address(2), (255) } AddressType`.
pub mod address_type {
    pub const IPV4_ADDRESS: u8 = 1;
    pub const IPV6_ADDRESS: u8 = 2;
}

/// `IpAddressPort` — RFC 6940 §6.3.1.1: type, length of the rest, then an
/// IPv4AddrPort or IPv6AddrPort. The structure is extensible: an unknown
/// address type is kept as its raw bytes so that it can be skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IpAddressPort {
    Ip(SocketAddr),
    Unknown { address_type: u8, data: Vec<u8> },
}

impl From<SocketAddr> for IpAddressPort {
    fn from(a: SocketAddr) -> Self {
        IpAddressPort::Ip(a)
    }
}

impl Encode for IpAddressPort {
    fn encode(&self, w: &mut Writer) {
        match self {
            IpAddressPort::Ip(SocketAddr::V4(a)) => {
                w.u8(address_type::IPV4_ADDRESS);
                w.u8(6);
                w.u32(u32::from(*a.ip()));
                w.u16(a.port());
            }
            IpAddressPort::Ip(SocketAddr::V6(a)) => {
                w.u8(address_type::IPV6_ADDRESS);
                w.u8(18);
                w.u128(u128::from(*a.ip()));
                w.u16(a.port());
            }
            IpAddressPort::Unknown { address_type, data } => {
                w.u8(*address_type);
                w.opaque(LenPrefix::U8, "IpAddressPort", data);
            }
        }
    }
}

impl Decode for IpAddressPort {
    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let address_type = r.u8("IpAddressPort.type")?;
        let mut body = r.sub(LenPrefix::U8, "IpAddressPort.length")?;
        let expected = match address_type {
            address_type::IPV4_ADDRESS => 6,
            address_type::IPV6_ADDRESS => 18,
            0 => {
                return Err(DecodeError::InvalidValue {
                    what: "IpAddressPort.type",
                    value: 0,
                })
            }
            _ => {
                return Ok(IpAddressPort::Unknown {
                    address_type,
                    data: body.rest().to_vec(),
                })
            }
        };
        if body.remaining() != expected {
            return Err(DecodeError::BadLength {
                what: "IpAddressPort.length",
                expected,
                found: body.remaining(),
            });
        }
        let ip: std::net::IpAddr = if address_type == address_type::IPV4_ADDRESS {
            Ipv4Addr::from(body.u32("IPv4AddrPort.addr")?).into()
        } else {
            Ipv6Addr::from(body.u128("IPv6AddrPort.addr")?).into()
        };
        let port = body.u16("IpAddressPort.port")?;
        Ok(IpAddressPort::Ip(SocketAddr::new(ip, port)))
    }
}
