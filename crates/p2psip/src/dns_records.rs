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
    /// A proxy peer's SIP over TLS address (its --sip-tls), in the same
    /// order as --proxy-peer; TLS is then offered first (SIPS+D2T).
    #[arg(long = "proxy-peer-tls", value_name = "IP:PORT")]
    proxy_peers_tls: Vec<SocketAddr>,
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
    if args.proxy_peers_tls.len() > args.proxy_peers.len() {
        bail!("more --proxy-peer-tls than --proxy-peer: give each proxy peer's TLS address in the same order");
    }
    let peers = ProxyPeers {
        plain: &args.proxy_peers,
        tls: &args.proxy_peers_tls,
    };
    for line in records(&domain, &peers, args.ttl, args.format) {
        println!("{line}");
    }
    Ok(())
}

/// The proxy peers' SIP addresses: UDP and TCP, and TLS for the first
/// `tls.len()` of them.
struct ProxyPeers<'a> {
    plain: &'a [SocketAddr],
    tls: &'a [SocketAddr],
}

/// TLS first when offered (a caller that can should use it), then UDP,
/// as most phones and proxies prefer it, then TCP for messages too big for
/// a datagram; each through the SRV records of every proxy peer.
fn records(domain: &str, peers: &ProxyPeers, ttl: u32, format: Format) -> Vec<String> {
    let mut transports = vec![
        (Transport::Udp, "SIP+D2U", peers.plain),
        (Transport::Tcp, "SIP+D2T", peers.plain),
    ];
    if !peers.tls.is_empty() {
        transports.insert(0, (Transport::Tls, "SIPS+D2T", peers.tls));
    }
    let host = |i: usize| format!("proxy-peer-{}.{domain}", i + 1);
    let mut lines = Vec::new();
    if let Format::Zone = format {
        lines.push(format!("; SIP for {domain} through its proxy peers (RFC 3263)"));
    }
    for (order, (transport, service, _)) in transports.iter().enumerate() {
        let srv = srv_name(false, *transport, domain);
        let order = 10 * (order + 1);
        lines.push(match format {
            Format::Zone => format!("{domain}. {ttl} IN NAPTR {order} 10 \"S\" \"{service}\" \"\" {srv}."),
            Format::Dnsmasq => format!("--naptr-record={domain},{order},10,S,{service},,{srv}"),
        });
    }
    for (transport, _, addresses) in transports {
        let srv = srv_name(false, transport, domain);
        for (i, peer) in addresses.iter().enumerate() {
            // Each peer a priority of its own: callers try them in order.
            let priority = 10 * (i + 1);
            let (port, target) = (peer.port(), host(i));
            lines.push(match format {
                Format::Zone => format!("{srv}. {ttl} IN SRV {priority} 10 {port} {target}."),
                Format::Dnsmasq => format!("--srv-host={srv},{target},{port},{priority},10"),
            });
        }
    }
    for (i, peer) in peers.plain.iter().enumerate() {
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
        let plain = ["192.0.2.1:5060".parse().unwrap(), "[2001:db8::2]:5062".parse().unwrap()];
        let peers = ProxyPeers {
            plain: &plain,
            tls: &[],
        };
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
        let one = ProxyPeers {
            plain: &plain[..1],
            tls: &[],
        };
        let dnsmasq = records("office.test", &one, 60, Format::Dnsmasq);
        assert!(dnsmasq.contains(&"--srv-host=_sip._udp.office.test,proxy-peer-1.office.test,5060,10,10".to_string()));
        assert!(dnsmasq.contains(&"--local-ttl=60".to_string()));
    }

    #[test]
    fn tls_is_offered_first_when_the_proxy_peers_have_it() {
        let plain = ["192.0.2.1:5060".parse().unwrap()];
        let tls = ["192.0.2.1:5061".parse().unwrap()];
        let peers = ProxyPeers {
            plain: &plain,
            tls: &tls,
        };
        let zone = records("office.test", &peers, 60, Format::Zone);
        assert_eq!(
            zone[1],
            "office.test. 60 IN NAPTR 10 10 \"S\" \"SIPS+D2T\" \"\" _sips._tcp.office.test."
        );
        assert!(zone.contains(&"_sips._tcp.office.test. 60 IN SRV 10 10 5061 proxy-peer-1.office.test.".to_string()));
        assert_eq!(
            zone.iter().filter(|l| l.contains(" IN A ")).count(),
            1,
            "one host, two ports"
        );
    }
}
