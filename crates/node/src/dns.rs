//! The DNS behind RFC 3263 (decision 0034): answers the questions of
//! [`sip::server_location`] with hickory's resolver, whose cache keeps each
//! answer for its TTL. Resolver addresses come from the system
//! (`/etc/resolv.conf`) or from the peer's `--dns-server`.

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::NetError;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::TokioResolver;
use sip::server_location::{Answer, Naptr, Query, Srv};
use std::net::SocketAddr;
use std::time::Duration;

/// How long one DNS server has to answer, and how many times a question
/// is asked: well inside the proxy's 32 s for a whole lookup.
const TIMEOUT: Duration = Duration::from_secs(2);
const ATTEMPTS: usize = 2;

/// Why the peer has no DNS.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the system's DNS configuration ({0}); give --dns-server IP:PORT")]
pub struct NoResolver(String);

#[derive(Clone)]
pub struct Dns {
    resolver: TokioResolver,
}

impl Dns {
    /// The resolvers at `servers`, or the system's when there are none.
    pub fn new(servers: &[SocketAddr]) -> Result<Dns, NoResolver> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if servers.is_empty() {
            TokioResolver::builder(provider).map_err(|e| NoResolver(e.to_string()))?
        } else {
            let name_servers = servers
                .iter()
                .map(|s| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = s.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = s.port();
                    NameServerConfig::new(s.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(name_servers), provider)
        };
        let options = builder.options_mut();
        options.timeout = TIMEOUT;
        options.attempts = ATTEMPTS;
        options.ip_strategy = hickory_resolver::config::LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder.build().map_err(|e| NoResolver(e.to_string()))?;
        Ok(Dns { resolver })
    }

    /// The answer to `query`: empty when the name or record does not
    /// exist, `None` when the DNS could not say.
    pub async fn ask(&self, query: &Query) -> Option<Answer> {
        match query {
            Query::Naptr(name) => self
                .records(name, RecordType::NAPTR, |r| match r {
                    RData::NAPTR(n) => Some(Naptr {
                        order: n.order,
                        preference: n.preference,
                        flags: String::from_utf8_lossy(&n.flags).into_owned(),
                        services: String::from_utf8_lossy(&n.services).into_owned(),
                        replacement: n.replacement.to_ascii(),
                    }),
                    _ => None,
                })
                .await
                .map(Answer::Naptr),
            Query::Srv(name) => self
                .records(name, RecordType::SRV, |r| match r {
                    RData::SRV(s) => Some(Srv {
                        priority: s.priority,
                        weight: s.weight,
                        port: s.port,
                        target: s.target.to_ascii(),
                    }),
                    _ => None,
                })
                .await
                .map(Answer::Srv),
            Query::Address(name) => {
                let ips = self.resolver.lookup_ip(absolute(name)).await;
                settled(ips.map(|ips| ips.iter().collect()), name, "A/AAAA").map(Answer::Address)
            }
        }
    }

    /// The records of `kind` at `name` that `pick` reads.
    async fn records<T>(&self, name: &str, kind: RecordType, pick: impl Fn(&RData) -> Option<T>) -> Option<Vec<T>> {
        let lookup = self.resolver.lookup(absolute(name), kind).await;
        let found = lookup.map(|l| l.answers().iter().filter_map(|r| pick(&r.data)).collect());
        settled(found, name, kind)
    }
}

/// A lookup's outcome: no such name or record is an empty answer, any
/// other failure none (logged at debug).
fn settled<T: Default>(result: Result<T, NetError>, name: &str, kind: impl std::fmt::Display) -> Option<T> {
    match result {
        Ok(found) => Some(found),
        Err(e) if e.is_no_records_found() => Some(T::default()),
        Err(e) => {
            tracing::debug!("dns: {kind} {name}: {e}");
            None
        }
    }
}

/// RFC 3263 names are absolute: no search domain is tried.
fn absolute(name: &str) -> String {
    if name.ends_with('.') {
        name.to_string()
    } else {
        format!("{name}.")
    }
}
