//! The README's Quick start, run as a new user runs it: the main command
//! exactly as written (plus a port and a directory, so that it does not
//! collide with anything else on the machine), through cargo, from the
//! repository's root.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The commands of the README's Quick start block: what comes before the
/// `#` comment of each line.
fn quick_start(readme: &str) -> Vec<String> {
    let section = readme
        .split("\n## Quick start")
        .nth(1)
        .expect("README.md has a '## Quick start' section");
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("the Quick start has a ```sh block");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or_default().trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_quick_start_block_is_the_run_command_and_the_test_command_ci_runs() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let commands = quick_start(&readme);
    assert_eq!(commands.len(), 2, "one command runs, one tests: {commands:?}");
    assert!(
        commands[0].contains(" demo"),
        "the first runs the demo: {}",
        commands[0]
    );
    let ci = std::fs::read_to_string(repository().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim_start().starts_with(&commands[1])),
        ".ci/run runs the README's test command {:?}",
        commands[1]
    );
}

/// Every link of README.md and docs/ARCHITECTURE.md to a file is to a
/// file of the repository.
#[test]
fn the_readme_links_only_inside_the_repository() {
    for doc in ["README.md", "docs/ARCHITECTURE.md"] {
        let path = repository().join(doc);
        let text = std::fs::read_to_string(&path).unwrap();
        for link in text.split("](").skip(1).filter_map(|rest| rest.split(')').next()) {
            if link.starts_with("http") || link.starts_with('#') {
                continue;
            }
            let target = path.parent().unwrap().join(link.split('#').next().unwrap());
            assert!(target.exists(), "{doc} links to {link}, which is not in the repository");
            let inside = target.canonicalize().unwrap();
            assert!(
                inside.starts_with(repository().canonicalize().unwrap()),
                "{doc} links outside the repository: {link}"
            );
        }
    }
}

/// The first command of the Quick start, verbatim, brings up the demo:
/// every peer in one ring, the accounts' registrars answering, and Ctrl-C
/// stops it all with status 0. Cargo builds the release binary first if
/// it has to (minutes on a fresh clone).
#[test]
fn the_quick_start_command_runs_the_demo_from_a_fresh_clone() {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let run = quick_start(&readme).remove(0);
    let words: Vec<&str> = run.split_whitespace().collect();
    assert_eq!(words[0], "cargo", "{run}");
    let dir = scratch("readme").join("demo");
    let base = free_port_block(500);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let log = dir.with_extension("log");
    let mut demo = Procs(vec![Command::new(cargo)
        .args(&words[1..])
        .args(["--base-port", &base.to_string(), "--dir", dir.to_str().unwrap()])
        .current_dir(repository())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(dir.with_extension("err")).unwrap())
        .spawn()
        .unwrap()]);

    let json = dir.join("demo.json");
    wait_for(
        Duration::from_secs(1200),
        "the demo to build and write demo.json",
        || {
            if let Ok(Some(status)) = demo.0[0].try_wait() {
                panic!(
                    "`{run}` exited ({status}): {}",
                    std::fs::read_to_string(dir.with_extension("err")).unwrap_or_default()
                );
            }
            json.exists()
        },
    );
    let file: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let peers = file["peers"].as_array().unwrap();
    assert_eq!(peers.len(), 5, "five peers by default");
    let statuses: Vec<_> = peers
        .iter()
        .map(|p| status(p["admin"].as_str().unwrap().parse().unwrap()).expect("every peer answers"))
        .collect();
    node::peer::ring_consistent(statuses).expect("one consistent ring");
    let accounts = file["accounts"].as_array().unwrap();
    let users: Vec<&str> = accounts.iter().map(|a| a["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["alice", "bob"]);
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for a in accounts {
        // A REGISTER without credentials is challenged in the account's
        // realm: the registrar is up and knows the domain.
        let registrar: std::net::SocketAddr = a["registrar"].as_str().unwrap().parse().unwrap();
        let (user, domain) = (a["user"].as_str().unwrap(), a["domain"].as_str().unwrap());
        let register = format!(
            "REGISTER sip:{domain} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKreadme{user}\r\n\
             From: <sip:{user}@{domain}>;tag=1\r\nTo: <sip:{user}@{domain}>\r\nCall-ID: readme-{user}\r\n\
             CSeq: 1 REGISTER\r\nContact: <sip:{user}@127.0.0.1:9>\r\nContent-Length: 0\r\n\r\n"
        );
        socket.send_to(register.as_bytes(), registrar).unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) = socket.recv_from(&mut buf).expect("the registrar answers");
        let answer = String::from_utf8_lossy(&buf[..n]);
        assert!(answer.starts_with("SIP/2.0 401"), "{answer}");
        assert!(answer.contains(&format!("realm=\"{domain}\"")), "{answer}");
    }

    // Ctrl-C: `cargo run` has become the demo (it execs the binary).
    let pid = demo.0[0].id().to_string();
    Command::new("kill").args(["-INT", &pid]).status().unwrap();
    let child = &mut demo.0[0];
    wait_for(Duration::from_secs(120), "the demo to stop", || {
        child.try_wait().unwrap().is_some()
    });
    let status = child.wait().unwrap();
    let out = std::fs::read_to_string(&log).unwrap();
    assert!(status.success(), "Ctrl-C stops the demo cleanly ({status}):\n{out}");
    assert!(out.contains("all stopped"), "{out}");
}
