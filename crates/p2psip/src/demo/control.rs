//! The running demo's control socket, `DIR/control.sock`: how
//! `p2psip demo restart N` reaches the demo that owns peer N. One request
//! line, one answer line; the demo answers once the peer is back in the
//! ring or has failed to get there.

use anyhow::{bail, Context, Result};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The socket's file name in the demo's directory.
pub const SOCKET: &str = "control.sock";
/// How long `demo restart` waits for the answer: the demo answers once the
/// peer has joined, which takes seconds.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(90);

/// What a client may ask of the running demo.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    /// Start peer N again, from its node directory.
    Restart(usize),
}

impl Request {
    pub fn parse(line: &str) -> Result<Request, String> {
        match line.split_whitespace().collect::<Vec<_>>()[..] {
            ["restart", n] => n
                .parse()
                .map(Request::Restart)
                .map_err(|_| format!("{n:?} is not a peer number")),
            _ => Err("unknown request; the demo understands `restart N`".into()),
        }
    }
}

/// `p2psip demo restart N`: asks the demo in `dir` (or the one demo
/// running in the temp directory) to bring peer N back; prints its answer.
pub fn restart(peer: u16, dir: Option<&Path>) -> Result<()> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => running_demo()?,
    };
    let socket = dir.join(SOCKET);
    let stream = UnixStream::connect(&socket).with_context(|| {
        format!(
            "no demo answers at {}; is `p2psip demo --dir {}` running?",
            socket.display(),
            dir.display()
        )
    })?;
    match node::control::exchange(stream, &format!("restart {peer}"), ANSWER_TIMEOUT)
        .context("the demo did not answer")?
    {
        Ok(done) => {
            println!("{done}");
            Ok(())
        }
        Err(why) => bail!("{why}"),
    }
}

/// The one demo running with its default directory (under the temp
/// directory) whose control socket answers.
fn running_demo() -> Result<PathBuf> {
    let tmp = std::env::temp_dir();
    let mut live: Vec<PathBuf> = std::fs::read_dir(&tmp)
        .with_context(|| format!("cannot list {}", tmp.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("p2psip-demo-"))
        })
        .filter(|p| UnixStream::connect(p.join(SOCKET)).is_ok())
        .collect();
    live.sort();
    match live.len() {
        0 => bail!(
            "no demo is running in {}; give --dir DIR of the demo (the directory its summary names)",
            tmp.display()
        ),
        1 => Ok(live.remove(0)),
        _ => bail!(
            "{} demos are running ({}); say which with --dir DIR",
            live.len(),
            live.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_parse_and_anything_else_is_refused() {
        assert_eq!(Request::parse("restart 2\n"), Ok(Request::Restart(2)));
        assert!(Request::parse("restart two").unwrap_err().contains("not a peer number"));
        assert!(Request::parse("reboot 2").unwrap_err().contains("restart N"));
        assert!(Request::parse("").is_err());
    }
}
