//! A peer's admin API (`p2psip peer --admin`), read with plain HTTP/1.0:
//! the bench needs two GETs, not an HTTP client.

use anyhow::{bail, Context, Result};
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

/// The body of `GET path`, which must answer 200.
pub fn get(admin: SocketAddr, path: &str) -> Result<String> {
    let mut tcp = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(2))
        .with_context(|| format!("the admin API at {admin} does not answer"))?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(tcp, "GET {path} HTTP/1.0\r\nHost: {admin}\r\n\r\n")?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)?;
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        bail!("GET {path} at {admin}: {status}: {}", body.trim());
    }
    Ok(body.to_string())
}

/// One OpenMetrics sample, `series` being its name with labels.
pub fn metric(admin: SocketAddr, series: &str) -> Result<f64> {
    Ok(sample(&get(admin, "/metrics")?, series).unwrap_or(0.0))
}

/// A sample of one `/metrics` text, for reading several from one scrape.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Where a resource name lives, as `GET /responsible/NAME` says.
#[derive(Debug, serde::Deserialize)]
pub struct Responsible {
    pub peer: ResponsiblePeer,
}

#[derive(Debug, serde::Deserialize)]
pub struct ResponsiblePeer {
    pub hops: u32,
}

pub fn responsible(admin: SocketAddr, name: &str) -> Result<Responsible> {
    let body = get(admin, &format!("/responsible/{name}"))?;
    serde_json::from_str(&body).with_context(|| format!("GET /responsible/{name} at {admin}: {body}"))
}

#[cfg(test)]
mod tests {
    use super::sample;

    #[test]
    fn a_sample_is_found_by_its_whole_series_name() {
        let text = "p2psip_request_hops_sum{method=\"fetch\"} 12.0\n\
                    p2psip_request_hops_count{method=\"fetch\"} 4\n\
                    p2psip_sent_bytes_total 99\n";
        assert_eq!(sample(text, "p2psip_request_hops_count{method=\"fetch\"}"), Some(4.0));
        assert_eq!(sample(text, "p2psip_request_hops_sum{method=\"fetch\"}"), Some(12.0));
        assert_eq!(sample(text, "p2psip_sent_bytes"), None, "a prefix is not the series");
        assert_eq!(sample(text, "p2psip_request_hops_count{method=\"store\"}"), None);
    }
}
