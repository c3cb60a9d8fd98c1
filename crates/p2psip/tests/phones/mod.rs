//! SIPp (Debian `sip-tester`) as the phones of the whole-system tests:
//! scenarios for one domain, registration with digest, and calls between
//! two registered phones.
#![allow(dead_code)] // each test binary uses its own subset

use crate::common::free_port;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The scenarios of one domain, written into a directory of the test.
pub struct Scenarios {
    pub dir: PathBuf,
    pub domain: String,
}

impl Scenarios {
    pub fn new(dir: &Path, domain: &str) -> Scenarios {
        std::fs::create_dir_all(dir).unwrap();
        Scenarios {
            dir: dir.to_path_buf(),
            domain: domain.to_string(),
        }
    }

    /// REGISTER, answer the 401 with `[authentication]`, then expect
    /// `final_status`.
    pub fn register(&self, name: &str, expires: u32, final_status: u16) -> PathBuf {
        let domain = &self.domain;
        let register = |cseq: u32, auth: &str| {
            format!(
                "<send retrans=\"500\"><![CDATA[\n\
REGISTER sip:{domain} SIP/2.0\n\
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
From: <sip:[service]@{domain}>;tag=[call_number]\n\
To: <sip:[service]@{domain}>\n\
Call-ID: [call_id]\n\
CSeq: {cseq} REGISTER\n\
Contact: <sip:[service]@[local_ip]:[local_port];transport=[transport]>\n\
{auth}\
Max-Forwards: 70\n\
Expires: {expires}\n\
Content-Length: 0\n\
\n]]></send>\n"
            )
        };
        let xml = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"{name}\">\n{}\
<recv response=\"401\" auth=\"true\"/>\n{}<recv response=\"{final_status}\"/>\n</scenario>\n",
            register(1, ""),
            register(2, "[authentication]\n"),
        );
        let path = self.dir.join(format!("{name}.xml"));
        std::fs::write(&path, xml).unwrap();
        path
    }

    /// A scenario of `tests/sipp/` for this domain, the calling phone
    /// being `caller`'s.
    pub fn named(&self, name: &str, caller: &str) -> PathBuf {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/sipp/{name}.xml"));
        let text = std::fs::read_to_string(&source)
            .unwrap()
            .replace("DOMAIN", &self.domain)
            .replace("CALLER", caller);
        let path = self.dir.join(format!("{name}-{caller}.xml"));
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Registers `user` from UDP port `local` at `peer` (digest).
    pub fn register_at(&self, peer: SocketAddr, local: u16, user: &str, password: &str) {
        self.register_from("127.0.0.1", peer, local, user, password);
    }

    /// [`register_at`](Self::register_at) from `local_ip`.
    pub fn register_from(&self, local_ip: &str, peer: SocketAddr, local: u16, user: &str, password: &str) {
        let reg = self.register("register-call", 3600, 200);
        let mut extra = register_args(user, password).to_vec();
        // SIPp's default digest uri is the target's address, which it
        // writes unbracketed for IPv6 (`sip:::1:5060`): name the domain.
        let auth_uri = self.domain.clone();
        if peer.is_ipv6() {
            extra.extend(["-auth_uri", auth_uri.as_str()]);
        }
        let ok = sipp_on(Command::new("sipp"), local_ip, "u1", &reg, peer, local, user, &extra)
            .status()
            .unwrap()
            .success();
        assert!(ok, "{user} registers at {peer}");
    }
}

/// Runs one SIPp call of `scenario` against `target` from a fresh local
/// port; whether it succeeded.
pub fn sipp(scenario: &Path, target: SocketAddr, user: &str, password: &str, transport: &str) -> bool {
    let local = free_port();
    Command::new("sipp")
        .arg(target.to_string())
        .args(["-sf", scenario.to_str().unwrap()])
        .args(["-s", user, "-au", user, "-ap", password])
        .args(["-i", "127.0.0.1", "-p", &local.to_string(), "-t", transport])
        .args(["-m", "1", "-nostdin", "-timeout", "20s", "-timeout_error"])
        .args(["-trace_err"])
        .current_dir(scenario.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sipp runs")
        .success()
}

/// The arguments of one REGISTER with `user`'s digest credentials.
pub fn register_args<'a>(user: &'a str, password: &'a str) -> [&'a str; 9] {
    [
        "-au",
        user,
        "-ap",
        password,
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
    ]
}

/// SIPp on a fixed local UDP port (the phone's registered flow).
pub fn sipp_at(scenario: &Path, target: SocketAddr, local: u16, service: &str, extra: &[&str]) -> Command {
    sipp_on(
        Command::new("sipp"),
        "127.0.0.1",
        "u1",
        scenario,
        target,
        local,
        service,
        extra,
    )
}

/// [`sipp_at`] with SIPp started by `sipp` (in a network namespace, say)
/// on `local_ip`, over `transport` (SIPp's `-t`: `u1` UDP, `t1` TCP).
#[allow(clippy::too_many_arguments)]
pub fn sipp_on(
    mut c: Command,
    local_ip: &str,
    transport: &str,
    scenario: &Path,
    target: SocketAddr,
    local: u16,
    service: &str,
    extra: &[&str],
) -> Command {
    c.arg(target.to_string())
        .args(["-sf", scenario.to_str().unwrap()])
        .args(["-s", service])
        .args(["-i", local_ip, "-p", &local.to_string(), "-t", transport])
        .args(["-nostdin", "-trace_err"])
        .args(extra)
        .current_dir(scenario.parent().unwrap())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// A calling and a called phone, each registered: the SIP address of its
/// peer, the UDP port it registered from, and its user.
pub struct Phones {
    pub scenarios: Scenarios,
    pub caller: (SocketAddr, u16, String),
    pub callee: (SocketAddr, u16, String),
}

impl Phones {
    /// The caller's SIPp runs `uac` to `service` for `calls` calls (20 a
    /// second) while the callee's SIPp, if `uas` is given, answers them;
    /// both must succeed.
    pub fn run(&self, uas: Option<&str>, uac: &str, service: &str, calls: u32, what: &str) {
        let calls = calls.to_string();
        let limits = ["-m", calls.as_str(), "-r", "20", "-timeout", "60s", "-timeout_error"];
        let (caller_peer, caller_port, caller) = &self.caller;
        let callee = uas.map(|uas| {
            let (peer, port, user) = &self.callee;
            sipp_at(&self.scenarios.named(uas, caller), *peer, *port, user, &limits)
                .spawn()
                .expect("sipp starts")
        });
        let ok = sipp_at(
            &self.scenarios.named(uac, caller),
            *caller_peer,
            *caller_port,
            service,
            &limits,
        )
        .status()
        .unwrap()
        .success();
        assert!(ok, "{what}: the caller's scenario failed");
        if let Some(mut callee) = callee {
            let status = callee.wait().unwrap();
            assert!(status.success(), "{what}: the callee's scenario failed ({status})");
        }
    }
}
