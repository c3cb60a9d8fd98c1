//! A minimal pcap (libpcap 2.4, Ethernet) writer, so that tools and tests
//! can hand RELOAD frames to Wireshark without capturing: each record is a
//! hand-made Ethernet/IPv4/UDP or TCP packet around the payload.

use crate::codec::Writer;
use crate::error::EncodeError;
use crate::framing::{encode_data, FramedMessage};
use std::net::SocketAddrV4;

/// The RELOAD port Wireshark dissects by default (§14.2).
pub const RELOAD_PORT: u16 = 6084;

const LINKTYPE_ETHERNET: u32 = 1;

/// How a capture carries RELOAD frames between two addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp,
    /// One TCP connection, opened with a handshake on first use.
    Tcp,
}

/// Builds a pcap file in memory.
pub struct PcapWriter {
    out: Vec<u8>,
    micros: u64,
    tcp: Vec<TcpFlow>,
}

struct TcpFlow {
    a: SocketAddrV4,
    b: SocketAddrV4,
    next_seq_a: u32,
    next_seq_b: u32,
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH: u8 = 0x08;

impl Default for PcapWriter {
    fn default() -> Self {
        Self::new()
    }
}

impl PcapWriter {
    pub fn new() -> Self {
        let mut out = Vec::with_capacity(4096);
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&0i32.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&65_535u32.to_le_bytes());
        out.extend_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        PcapWriter {
            out,
            micros: 1_700_000_000_000_000,
            tcp: Vec::new(),
        }
    }

    /// Appends a UDP datagram from `src` to `dst` carrying `payload`.
    pub fn udp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let mut udp = Vec::with_capacity(8 + payload.len());
        udp.extend_from_slice(&src.port().to_be_bytes());
        udp.extend_from_slice(&dst.port().to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]); // no checksum (allowed over IPv4)
        udp.extend_from_slice(payload);
        self.ipv4(src, dst, 17, &udp);
    }

    /// Appends `payload` as one TCP segment of the connection from `src`
    /// to `dst`, opening it with a three-way handshake on first use so
    /// that stream reassembly sees a complete, consistent flow.
    pub fn tcp(&mut self, src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) {
        let idx = match self
            .tcp
            .iter()
            .position(|f| (f.a == src && f.b == dst) || (f.a == dst && f.b == src))
        {
            Some(i) => i,
            None => {
                let (isn_a, isn_b) = (1000u32, 5000u32);
                self.tcp_segment(src, dst, isn_a, 0, SYN, &[]);
                self.tcp_segment(dst, src, isn_b, isn_a + 1, SYN | ACK, &[]);
                self.tcp_segment(src, dst, isn_a + 1, isn_b + 1, ACK, &[]);
                self.tcp.push(TcpFlow {
                    a: src,
                    b: dst,
                    next_seq_a: isn_a + 1,
                    next_seq_b: isn_b + 1,
                });
                self.tcp.len() - 1
            }
        };
        let f = &mut self.tcp[idx];
        let forward = f.a == src;
        let (seq, ack) = if forward {
            (f.next_seq_a, f.next_seq_b)
        } else {
            (f.next_seq_b, f.next_seq_a)
        };
        if forward {
            f.next_seq_a = seq.wrapping_add(payload.len() as u32);
        } else {
            f.next_seq_b = seq.wrapping_add(payload.len() as u32);
        }
        self.tcp_segment(src, dst, seq, ack, PSH | ACK, payload);
    }

    fn tcp_segment(&mut self, src: SocketAddrV4, dst: SocketAddrV4, seq: u32, ack: u32, flags: u8, payload: &[u8]) {
        let mut tcp = Vec::with_capacity(20 + payload.len());
        tcp.extend_from_slice(&src.port().to_be_bytes());
        tcp.extend_from_slice(&dst.port().to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.push(5 << 4); // data offset: 5 words
        tcp.push(flags);
        tcp.extend_from_slice(&65_535u16.to_be_bytes());
        tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum (unchecked by default), urgent pointer
        tcp.extend_from_slice(payload);
        let sum = transport_checksum(src, dst, 6, &tcp);
        tcp[16..18].copy_from_slice(&sum.to_be_bytes());
        self.ipv4(src, dst, 6, &tcp);
    }

    fn ipv4(&mut self, src: SocketAddrV4, dst: SocketAddrV4, proto: u8, l4: &[u8]) {
        let mut pkt = Vec::with_capacity(14 + 20 + l4.len());
        pkt.extend_from_slice(&[0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1, 0x08, 0x00]);
        let total = (20 + l4.len()) as u16;
        let mut ip = [0u8; 20];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        ip[6] = 0x40; // don't fragment
        ip[8] = 64;
        ip[9] = proto;
        ip[12..16].copy_from_slice(&src.ip().octets());
        ip[16..20].copy_from_slice(&dst.ip().octets());
        let sum = !(ones_complement_sum(0, &ip) as u16);
        ip[10..12].copy_from_slice(&sum.to_be_bytes());
        pkt.extend_from_slice(&ip);
        pkt.extend_from_slice(l4);
        self.record(&pkt);
    }

    fn record(&mut self, pkt: &[u8]) {
        self.micros += 1000;
        self.out
            .extend_from_slice(&((self.micros / 1_000_000) as u32).to_le_bytes());
        self.out
            .extend_from_slice(&((self.micros % 1_000_000) as u32).to_le_bytes());
        self.out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&(pkt.len() as u32).to_le_bytes());
        self.out.extend_from_slice(pkt);
    }

    /// One overlay-link exchange (§6.6.2): `message` in a data frame with
    /// `sequence` from `from` to `to`, and the receiver's ack back. Returns
    /// the data frame.
    pub fn reload_exchange(
        &mut self,
        transport: Transport,
        from: SocketAddrV4,
        to: SocketAddrV4,
        sequence: u32,
        message: &[u8],
    ) -> Result<Vec<u8>, EncodeError> {
        let mut w = Writer::with_capacity(message.len() + 8);
        encode_data(&mut w, sequence, message);
        let frame = w.finish()?;
        let ack = FramedMessage::Ack {
            ack_sequence: sequence,
            received: 0,
        }
        .to_bytes()?;
        match transport {
            Transport::Udp => {
                self.udp(from, to, &frame);
                self.udp(to, from, &ack);
            }
            Transport::Tcp => {
                self.tcp(from, to, &frame);
                self.tcp(to, from, &ack);
            }
        }
        Ok(frame)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.out
    }
}

fn ones_complement_sum(mut acc: u32, data: &[u8]) -> u32 {
    for c in data.chunks(2) {
        acc += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while acc > 0xffff {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc
}

fn transport_checksum(src: SocketAddrV4, dst: SocketAddrV4, proto: u8, l4: &[u8]) -> u16 {
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&src.ip().octets());
    pseudo.extend_from_slice(&dst.ip().octets());
    pseudo.extend_from_slice(&[0, proto]);
    pseudo.extend_from_slice(&(l4.len() as u16).to_be_bytes());
    let acc = ones_complement_sum(0, &pseudo);
    !(ones_complement_sum(acc, l4) as u16)
}
