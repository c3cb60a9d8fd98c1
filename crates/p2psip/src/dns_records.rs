//! `p2psip dns-records`: the DNS records an operator publishes so that
//! other SIP domains reach the overlay's users through its proxy peers
//! (RFC 3263 §4: NAPTR, then SRV, then A/AAAA; decision 0034).

use anyhow::{bail, Result};
use clap::{Args, ValueEnum};
use sip::registrar::Transport;
use sip::server_location::srv_name;
use std::net::SocketAddr;

#[derive(Args)]
pub struct DnsRecordsArgs {
    /// The overlay's SIP domain (its instance-name), e.g. office.example.org.
    #[arg(long)]
    domain: String,
    /// A proxy peer's SIP address (its --sip), in order of preference;
    /// repeat for more. Callers fail over to the next when one is down.
    #[arg(long = "proxy-peer", value_name = "IP:PORT", required = true)]
    proxy_peers: Vec<SocketAddr>,
    /// Seconds resolvers may keep the records.
    #[arg(long, default_value_t = 300)]
    ttl: u32,
    /// zone: master-file lines for any DNS server; dnsmasq: its options.
    #[arg(long, value_enum, default_value_t = Format::Zone)]
    format: Format,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Zone,
    Dnsmasq,
}

pub fn run(args: DnsRecordsArgs) -> Result<()> {
    let domain = args.domain.trim_end_matches('.').to_ascii_lowercase();
    let valid = |label: &str| {
        !label.is_empty() && label.len() <= 63 && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if !domain.split('.').all(valid) {
        bail!("--domain {:?} is not a DNS name, e.g. office.example.org", args.domain);
    }
    for line in records(&domain, &args.proxy_peers, args.ttl, args.format) {
        println!("{line}");
    }
    Ok(())
}

/// UDP and TCP, each through the SRV records of every proxy peer: UDP
/// first, as most phones and proxies prefer it; TCP for messages too big
/// for a datagram.
fn records(domain: &str, peers: &[SocketAddr], ttl: u32, format: Format) -> Vec<String> {
    let transports = [(Transport::Udp, "SIP+D2U"), (Transport::Tcp, "SIP+D2T")];
    let host = |i: usize| format!("proxy-peer-{}.{domain}", i + 1);
    let mut lines = Vec::new();
    if let Format::Zone = format {
        lines.push(format!("; SIP for {domain} through its proxy peers (RFC 3263)"));
    }
    for (order, (transport, service)) in transports.iter().enumerate() {
        let srv = srv_name(false, *transport, domain);
        let order = 10 * (order + 1);
        lines.push(match format {
            Format::Zone => format!("{domain}. {ttl} IN NAPTR {order} 10 \"S\" \"{service}\" \"\" {srv}."),
            Format::Dnsmasq => format!("--naptr-record={domain},{order},10,S,{service},,{srv}"),
        });
    }
    for (transport, _) in transports {
        let srv = srv_name(false, transport, domain);
        for (i, peer) in peers.iter().enumerate() {
            // Each peer a priority of its own: callers try them in order.
            let priority = 10 * (i + 1);
            let (port, target) = (peer.port(), host(i));
            lines.push(match format {
                Format::Zone => format!("{srv}. {ttl} IN SRV {priority} 10 {port} {target}."),
                Format::Dnsmasq => format!("--srv-host={srv},{target},{port},{priority},10"),
            });
        }
    }
    for (i, peer) in peers.iter().enumerate() {
        let kind = if peer.is_ipv4() { "A" } else { "AAAA" };
        let (ip, target) = (peer.ip(), host(i));
        lines.push(match format {
            Format::Zone => format!("{target}. {ttl} IN {kind} {ip}"),
            Format::Dnsmasq => format!("--host-record={target},{ip}"),
        });
    }
    if let Format::Dnsmasq = format {
        lines.push(format!("--local-ttl={ttl}"));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_proxy_peers_in_order_over_udp_and_tcp() {
        let peers = ["192.0.2.1:5060".parse().unwrap(), "[2001:db8::2]:5062".parse().unwrap()];
        let zone = records("office.test", &peers, 60, Format::Zone);
        assert_eq!(
            &zone[1..],
            [
                "office.test. 60 IN NAPTR 10 10 \"S\" \"SIP+D2U\" \"\" _sip._udp.office.test.",
                "office.test. 60 IN NAPTR 20 10 \"S\" \"SIP+D2T\" \"\" _sip._tcp.office.test.",
                "_sip._udp.office.test. 60 IN SRV 10 10 5060 proxy-peer-1.office.test.",
                "_sip._udp.office.test. 60 IN SRV 20 10 5062 proxy-peer-2.office.test.",
                "_sip._tcp.office.test. 60 IN SRV 10 10 5060 proxy-peer-1.office.test.",
                "_sip._tcp.office.test. 60 IN SRV 20 10 5062 proxy-peer-2.office.test.",
                "proxy-peer-1.office.test. 60 IN A 192.0.2.1",
                "proxy-peer-2.office.test. 60 IN AAAA 2001:db8::2",
            ]
        );
        let dnsmasq = records("office.test", &peers[..1], 60, Format::Dnsmasq);
        assert!(dnsmasq.contains(&"--srv-host=_sip._udp.office.test,proxy-peer-1.office.test,5060,10,10".to_string()));
        assert!(dnsmasq.contains(&"--local-ttl=60".to_string()));
    }
}
