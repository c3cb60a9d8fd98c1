//! Hosts, LANs and NATs on one machine: network namespaces the test
//! creates and removes (REAL-TOOLS.md, "Several hosts, NATs"). Nothing
//! listens outside them.

use super::{as_root, can_be_root};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// `ip ARGS` as root; a failure fails the test with ip's message.
pub fn ip(args: &[&str]) {
    let out = as_root("ip").args(args).output().expect("ip runs");
    assert!(
        out.status.success(),
        "ip {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A command run as root inside namespace `ns`.
pub fn in_ns(ns: &str, program: &str) -> Command {
    let mut c = as_root("ip");
    c.args(["netns", "exec", ns, program]);
    c
}

/// `program ARGS` inside `ns`, which must succeed.
pub fn run_in(ns: &str, program: &str, args: &[&str]) {
    let out = in_ns(ns, program).args(args).output().expect("ip netns exec runs");
    assert!(
        out.status.success(),
        "{program} {args:?} in {ns}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether this test can build namespaces here: root (or password-less
/// sudo) and iproute2, and for NATs iptables. In CI all must be there.
pub fn can_build_namespaces(what: &str, nat: bool) -> bool {
    let privileged = can_be_root();
    let runs = |tool: &str, arg: &str| Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
    let ip_runs = runs("ip", "-V");
    let iptables_runs = !nat || as_root("iptables").arg("-V").output().is_ok_and(|o| o.status.success());
    if privileged && ip_runs && iptables_runs {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "{what} needs root or sudo, iproute2 (ip){} in CI (root or sudo: {privileged}, ip: {ip_runs}, iptables: {iptables_runs})",
            if nat { " and iptables" } else { "" }
        );
    }
    eprintln!("SKIPPED: {what} needs root or password-less sudo, iproute2 and iptables");
    false
}

/// Namespaces removed, with every process left in them, when dropped.
pub struct Namespaces(Vec<String>, usize);

impl Namespaces {
    /// Names unique to this set: `p2psip-PID-N-NAME`, N counting the
    /// sets of this process (its tests run side by side).
    pub fn new() -> Namespaces {
        static SETS: AtomicUsize = AtomicUsize::new(0);
        Namespaces(Vec::new(), SETS.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates namespace `name` (loopback up) and returns its full name.
    pub fn add(&mut self, name: &str) -> String {
        let full = format!("p2psip-{}-{}-{name}", std::process::id() % 100_000, self.1);
        ip(&["netns", "add", &full]);
        ip(&["-n", &full, "link", "set", "lo", "up"]);
        self.0.push(full.clone());
        full
    }
}

impl Drop for Namespaces {
    /// Every process left in a namespace is killed (through sudo, a
    /// killed `sudo` would leave its child running), then the namespace
    /// goes, and with it its veths, bridges and iptables rules.
    fn drop(&mut self) {
        for ns in self.0.iter().rev() {
            let pids = as_root("ip").args(["netns", "pids", ns]).output();
            let pids = pids
                .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                .unwrap_or_default();
            for pid in pids.split_whitespace() {
                let _ = as_root("kill").args(["-KILL", pid]).status();
            }
            let _ = as_root("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A veth pair from `a`'s `a_name` to `b`'s `b_name`, both up.
fn veth(a: &str, a_name: &str, b: &str, b_name: &str) {
    ip(&[
        "link", "add", a_name, "netns", a, "type", "veth", "peer", "name", b_name, "netns", b,
    ]);
    ip(&["-n", a, "link", "set", a_name, "up"]);
    ip(&["-n", b, "link", "set", b_name, "up"]);
}

/// Hosts on one bridge (10.84.0.0/24), like an office LAN.
pub struct Lan {
    pub hosts: Vec<String>,
    // Last: removed after the hosts' processes were run.
    _namespaces: Namespaces,
}

impl Lan {
    /// `n` hosts at 10.84.0.1 to 10.84.0.n.
    pub fn new(n: usize) -> Lan {
        let mut namespaces = Namespaces::new();
        let bridge = namespaces.add("br");
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        let mut hosts = Vec::new();
        for i in 0..n {
            let host = namespaces.add(&format!("h{i}"));
            let port = format!("port{i}");
            veth(&host, "eth0", &bridge, &port);
            ip(&["-n", &bridge, "link", "set", &port, "master", "br0"]);
            ip(&[
                "-n",
                &host,
                "addr",
                "add",
                &format!("10.84.0.{}/24", i + 1),
                "dev",
                "eth0",
            ]);
            hosts.push(host);
        }
        Lan {
            hosts,
            _namespaces: namespaces,
        }
    }

    pub fn addr(&self, host: usize) -> String {
        format!("10.84.0.{}", host + 1)
    }

    /// A command run on `host`.
    pub fn on(&self, host: usize, program: &str) -> Command {
        in_ns(&self.hosts[host], program)
    }
}

/// How a NAT maps a private address and port to a public one (RFC 4787
/// §4.1). Both kinds filter by address and port (§5): only a host the
/// private one sent to may answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// Endpoint-independent ("cone"): one public port per private
    /// address and port, whoever it sends to.
    EndpointIndependent,
    /// Address-and-port-dependent ("symmetric"): a new random public
    /// port for each destination.
    AddressAndPortDependent,
}

/// The Internet in a box: a public bridge (203.0.113.0/24) with public
/// hosts on it, and NATs, each with its private LAN (10.N.0.0/24) of
/// hosts behind it.
pub struct NatLab {
    public_bridge: String,
    pub public: Vec<String>,
    /// Per NAT: its namespace and the hosts behind it.
    pub nats: Vec<(String, Vec<String>)>,
    _namespaces: Namespaces,
}

impl NatLab {
    /// `public` hosts at 203.0.113.1.., and one NAT per entry of `nats`
    /// (its mapping, how many hosts behind it). NAT n is 203.0.113.(101+n)
    /// outside and 10.(n+1).0.1 inside; its hosts are 10.(n+1).0.2...
    /// UDP bindings time out after `udp_timeout_s` of silence.
    pub fn new(public: usize, nats: &[(Mapping, usize)], udp_timeout_s: u32) -> NatLab {
        let mut namespaces = Namespaces::new();
        let bridge = namespaces.add("pub");
        ip(&["-n", &bridge, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge, "link", "set", "br0", "up"]);
        let mut public_hosts = Vec::new();
        let mut port = 0;
        let mut plug = |ns: &str, name: &str, address: &str| {
            let p = format!("p{port}");
            port += 1;
            veth(ns, name, &bridge, &p);
            ip(&["-n", &bridge, "link", "set", &p, "master", "br0"]);
            ip(&["-n", ns, "addr", "add", address, "dev", name]);
        };
        for i in 0..public {
            let host = namespaces.add(&format!("pub{i}"));
            plug(&host, "eth0", &format!("203.0.113.{}/24", i + 1));
            public_hosts.push(host);
        }
        let mut nat_list = Vec::new();
        for (n, (mapping, behind)) in nats.iter().enumerate() {
            let nat = namespaces.add(&format!("nat{n}"));
            plug(&nat, "wan", &format!("203.0.113.{}/24", 101 + n));
            ip(&["-n", &nat, "link", "add", "lan", "type", "bridge"]);
            ip(&["-n", &nat, "link", "set", "lan", "up"]);
            ip(&["-n", &nat, "addr", "add", &format!("10.{}.0.1/24", n + 1), "dev", "lan"]);
            run_in(&nat, "sysctl", &["-qw", "net.ipv4.ip_forward=1"]);
            let mut masquerade = vec!["-t", "nat", "-A", "POSTROUTING", "-o", "wan", "-j", "MASQUERADE"];
            if *mapping == Mapping::AddressAndPortDependent {
                masquerade.push("--random-fully");
            }
            run_in(&nat, "iptables", &masquerade);
            // Address-and-port-dependent filtering: nothing from outside
            // reaches the LAN unless it answers what went out.
            for rule in [
                &[
                    "-A",
                    "FORWARD",
                    "-i",
                    "wan",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "ESTABLISHED,RELATED",
                    "-j",
                    "ACCEPT",
                ][..],
                &["-A", "FORWARD", "-i", "wan", "-j", "DROP"][..],
                // Nor does anything unsolicited reach the NAT itself, as
                // with a home router: a check that arrives before the one
                // host behind sent its own would otherwise be taken in
                // locally, and its conntrack entry would hold the public
                // port that host's mapping needs, so the NAT would map it
                // to another port and stop being endpoint-independent.
                &[
                    "-A",
                    "INPUT",
                    "-i",
                    "wan",
                    "-m",
                    "conntrack",
                    "--ctstate",
                    "NEW,INVALID",
                    "-j",
                    "DROP",
                ][..],
            ] {
                run_in(&nat, "iptables", rule);
            }
            // The conntrack sysctls exist once the NAT rules use it.
            let timeout = udp_timeout_s.to_string();
            for key in ["nf_conntrack_udp_timeout", "nf_conntrack_udp_timeout_stream"] {
                run_in(&nat, "sysctl", &["-qw", &format!("net.netfilter.{key}={timeout}")]);
            }
            let mut hosts = Vec::new();
            for h in 0..*behind {
                let host = namespaces.add(&format!("nat{n}h{h}"));
                let p = format!("l{h}");
                veth(&host, "eth0", &nat, &p);
                ip(&["-n", &nat, "link", "set", &p, "master", "lan"]);
                ip(&[
                    "-n",
                    &host,
                    "addr",
                    "add",
                    &format!("10.{}.0.{}/24", n + 1, h + 2),
                    "dev",
                    "eth0",
                ]);
                ip(&[
                    "-n",
                    &host,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.{}.0.1", n + 1),
                ]);
                hosts.push(host);
            }
            nat_list.push((nat, hosts));
        }
        NatLab {
            public_bridge: bridge,
            public: public_hosts,
            nats: nat_list,
            _namespaces: namespaces,
        }
    }

    /// Public host `i`'s address.
    pub fn public_addr(i: usize) -> String {
        format!("203.0.113.{}", i + 1)
    }

    /// NAT `n`'s public address.
    pub fn nat_addr(n: usize) -> String {
        format!("203.0.113.{}", 101 + n)
    }

    /// Host `h` behind NAT `n`: its private address.
    pub fn private_addr(n: usize, h: usize) -> String {
        format!("10.{}.0.{}", n + 1, h + 2)
    }

    /// A command run on public host `i`.
    pub fn on_public(&self, i: usize, program: &str) -> Command {
        in_ns(&self.public[i], program)
    }

    /// A command run on host `h` behind NAT `n`.
    pub fn behind(&self, n: usize, h: usize, program: &str) -> Command {
        in_ns(&self.nats[n].1[h], program)
    }

    /// The public bridge's namespace (to capture what crosses it).
    pub fn public_bridge(&self) -> &str {
        &self.public_bridge
    }
}
