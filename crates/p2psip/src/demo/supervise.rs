//! The demo while it runs: it watches its processes, says in one line when
//! a peer dies and keeps the others serving (the overlay heals, which is
//! what the demo is there to show), restarts a dead peer on request
//! (`p2psip demo restart N`, or `r` typed into the demo's terminal), and
//! says when the ring is whole again.

use super::control::{self, Request};
use super::{ring_walk, status, write_demo_file, DemoFile, PeerSpec};
use anyhow::Result;
use std::net::SocketAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::sync::{mpsc, oneshot};

/// How often the demo looks at its processes.
const TICK: Duration = Duration::from_millis(500);
/// How long a restarted peer has to join before its restart is reported
/// as failed.
const REJOIN_LIMIT: Duration = Duration::from_secs(60);

/// A request from the control socket or the terminal, with where to send
/// the answer (none for the terminal: it reads the demo's own lines).
struct Asked {
    what: What,
    answer: Option<oneshot::Sender<String>>,
}

enum What {
    /// A control request: `restart N` from the socket, `r N` typed.
    Request(Request),
    /// `r` typed: every dead peer.
    RestartDead,
}

/// A restarted peer the demo waits for.
struct Rejoining {
    peer: usize,
    until: Instant,
    answer: Option<oneshot::Sender<String>>,
}

pub(super) struct Supervisor<'a> {
    pub dir: &'a Path,
    pub exe: &'a Path,
    pub specs: &'a [PeerSpec],
    pub peers: &'a mut [Child],
    pub server: &'a mut Option<Child>,
    pub file: &'a mut DemoFile,
    /// How the user names this demo on a command line (`--dir DIR`, or
    /// nothing for the default directory).
    pub dir_arg: String,
    alive: Vec<bool>,
    rejoining: Vec<Rejoining>,
    /// Since when the ring has been missing a peer that died.
    healing: Option<Instant>,
}

impl<'a> Supervisor<'a> {
    pub fn new(
        dir: &'a Path,
        exe: &'a Path,
        specs: &'a [PeerSpec],
        peers: &'a mut [Child],
        server: &'a mut Option<Child>,
        file: &'a mut DemoFile,
        dir_arg: String,
    ) -> Self {
        let alive = vec![true; peers.len()];
        Supervisor {
            dir,
            exe,
            specs,
            peers,
            server,
            file,
            dir_arg,
            alive,
            rejoining: Vec::new(),
            healing: None,
        }
    }

    /// Runs until `stop` completes (Ctrl-C or SIGTERM).
    pub async fn run(&mut self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let (asked_tx, mut asked) = mpsc::channel::<Asked>(8);
        let socket = self.dir.join(control::SOCKET);
        match node::control::bind(&socket) {
            Ok(listener) => {
                tokio::spawn(serve_control(listener, asked_tx.clone()));
            }
            Err(e) => println!(
                "(no control socket at {}: {e}; press r in this terminal to restart a dead peer)",
                socket.display()
            ),
        }
        read_terminal(asked_tx);
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(TICK);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                Some(a) = asked.recv() => self.on_request(a),
                _ = tick.tick() => self.on_tick().await,
            }
        }
        let _ = std::fs::remove_file(&socket);
        Ok(())
    }

    fn serving(&self) -> usize {
        self.alive.iter().filter(|a| **a).count()
    }

    fn restart_command(&self, peer: usize) -> String {
        format!("`p2psip demo restart {peer}{}`", self.dir_arg)
    }

    async fn on_tick(&mut self) {
        for i in 0..self.peers.len() {
            if !self.alive[i] {
                continue;
            }
            if let Ok(Some(exit)) = self.peers[i].try_wait() {
                self.died(i, exit);
            }
        }
        if let Some(server) = self.server.as_mut() {
            if let Ok(Some(exit)) = server.try_wait() {
                println!(
                    "the enrollment server exited ({}); the peers go on, but none can enroll (log: {})",
                    describe_exit(exit),
                    self.dir.join("enrollment.log").display()
                );
                *self.server = None;
            }
        }
        self.check_rejoining().await;
        self.check_healed().await;
    }

    fn died(&mut self, i: usize, exit: ExitStatus) {
        self.alive[i] = false;
        self.file.peers[i].alive = false;
        let why = match (exit.signal(), exit.code()) {
            (None, Some(code)) if code != 0 => {
                let last = last_line(&self.specs[i].log);
                format!("{}: {last}", describe_exit(exit))
            }
            _ => describe_exit(exit),
        };
        println!(
            "peer {i} died ({why}); {} peers serve; {} or press r to bring it back",
            self.serving(),
            self.restart_command(i)
        );
        self.healing.get_or_insert_with(Instant::now);
        for r in self.rejoining.iter_mut().filter(|r| r.peer == i) {
            if let Some(answer) = r.answer.take() {
                let _ = answer.send(format!("error: peer {i} exited again ({why})"));
            }
        }
        self.rejoining.retain(|r| r.peer != i);
        self.save();
    }

    fn on_request(&mut self, asked: Asked) {
        let i = match asked.what {
            What::Request(Request::Restart(i)) => i,
            What::RestartDead => return self.restart_all_dead(),
        };
        match self.restart(i) {
            Ok(()) => self.rejoining.push(Rejoining {
                peer: i,
                until: Instant::now() + REJOIN_LIMIT,
                answer: asked.answer,
            }),
            Err(why) => {
                println!("{why}");
                if let Some(answer) = asked.answer {
                    let _ = answer.send(format!("error: {why}"));
                }
            }
        }
    }

    /// `r` in the terminal: every dead peer.
    fn restart_all_dead(&mut self) {
        let dead: Vec<usize> = (0..self.peers.len()).filter(|&i| !self.alive[i]).collect();
        if dead.is_empty() {
            println!("every peer is running; nothing to restart");
        }
        for i in dead {
            self.on_request(Asked {
                what: What::Request(Request::Restart(i)),
                answer: None,
            });
        }
    }

    /// Starts peer `i` again from its node directory (same Node-ID, same
    /// ports), joining through the peers still running.
    fn restart(&mut self, i: usize) -> Result<(), String> {
        let n = self.peers.len();
        if i >= n {
            return Err(format!("the demo has no peer {i}: its peers are 0 to {}", n - 1));
        }
        if self.alive[i] {
            return Err(format!("peer {i} is running (pid {})", self.peers[i].id()));
        }
        let through: Vec<SocketAddr> = (0..n)
            .filter(|&j| self.alive[j])
            .map(|j| self.specs[j].reload)
            .collect();
        let child = super::spawn_peer(self.exe, &self.specs[i], &through).map_err(|e| format!("{e:#}"))?;
        println!(
            "restarting peer {i} (pid {}) from {}",
            child.id(),
            self.specs[i].node_dir.display()
        );
        self.file.peers[i].pid = child.id();
        self.file.peers[i].alive = true;
        self.peers[i] = child;
        self.alive[i] = true;
        self.save();
        Ok(())
    }

    async fn check_rejoining(&mut self) {
        let mut still = Vec::new();
        for mut r in std::mem::take(&mut self.rejoining) {
            let joined = status(self.specs[r.peer].admin).await.is_some_and(|s| s.joined);
            let line = if joined {
                format!(
                    "peer {} is back in the ring as Node-ID {} (pid {}); {} peers serve",
                    r.peer,
                    self.file.peers[r.peer].node_id,
                    self.peers[r.peer].id(),
                    self.serving()
                )
            } else if Instant::now() >= r.until {
                format!(
                    "peer {} has not joined {REJOIN_LIMIT:?} after its restart (log: {})",
                    r.peer,
                    self.specs[r.peer].log.display()
                )
            } else {
                still.push(r);
                continue;
            };
            println!("{line}");
            if let Some(answer) = r.answer.take() {
                let ok = if joined { "ok: " } else { "error: " };
                let _ = answer.send(format!("{ok}{line}"));
            }
        }
        self.rejoining = still;
    }

    /// Once the live peers form one ring again that a walk closes over,
    /// says so.
    async fn check_healed(&mut self) {
        let Some(since) = self.healing else { return };
        let live: Vec<usize> = (0..self.peers.len()).filter(|&i| self.alive[i]).collect();
        let Some(&first) = live.first() else { return };
        let mut statuses = Vec::with_capacity(live.len());
        for &i in &live {
            match status(self.specs[i].admin).await {
                Some(s) => statuses.push(s),
                None => return,
            }
        }
        if node::peer::ring_consistent(statuses).is_err() {
            return;
        }
        let walked = ring_walk(self.specs[first].admin).await;
        if walked.is_some_and(|w| w.complete && w.peers.len() == live.len()) {
            println!(
                "the ring is whole again: {} peers, {:.1} s after the loss",
                live.len(),
                since.elapsed().as_secs_f64()
            );
            self.healing = None;
        }
    }

    fn save(&self) {
        if let Err(e) = write_demo_file(&self.dir.join("demo.json"), self.file) {
            println!("cannot update demo.json: {e:#}");
        }
    }
}

/// Accepts control connections one after another; each sends one request
/// line within [`node::control::REQUEST_TIMEOUT`] and gets one answer line.
async fn serve_control(listener: tokio::net::UnixListener, asked: mpsc::Sender<Asked>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let asked = asked.clone();
        tokio::spawn(async move {
            let (read, mut write) = stream.into_split();
            let answer = match node::control::read_request(read).await {
                Some(line) => match Request::parse(&line) {
                    Ok(request) => {
                        let (tx, rx) = oneshot::channel();
                        let what = What::Request(request);
                        let _ = asked.send(Asked { what, answer: Some(tx) }).await;
                        rx.await.unwrap_or_else(|_| "error: the demo is stopping".into())
                    }
                    Err(why) => format!("error: {why}"),
                },
                None => format!(
                    "error: send one request line of at most {} bytes",
                    node::control::MAX_REQUEST
                ),
            };
            let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
        });
    }
}

/// Lines typed into the demo's terminal: `r` restarts every dead peer,
/// `r N` peer N. Ends at end of input (no terminal: nothing to read).
fn read_terminal(asked: mpsc::Sender<Asked>) {
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { return };
            let words: Vec<&str> = line.split_whitespace().collect();
            let what = match words[..] {
                ["r"] => What::RestartDead,
                ["r", n] => match n.parse() {
                    Ok(n) => What::Request(Request::Restart(n)),
                    Err(_) => {
                        println!("{n:?} is not a peer number");
                        continue;
                    }
                },
                [] => continue,
                _ => {
                    println!("type r to restart every dead peer, r N to restart peer N, Ctrl-C to stop");
                    continue;
                }
            };
            if asked.blocking_send(Asked { what, answer: None }).is_err() {
                return;
            }
        }
    });
}

/// How a process ended, as a person says it: `SIGKILL`, `exit status 2`.
pub(super) fn describe_exit(exit: ExitStatus) -> String {
    match (exit.signal(), exit.code()) {
        (Some(signal), _) => signal_name(signal),
        (None, Some(code)) => format!("exit status {code}"),
        _ => exit.to_string(),
    }
}

fn signal_name(signal: i32) -> String {
    let name = match signal {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGHUP => "SIGHUP",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGILL => "SIGILL",
        libc::SIGFPE => "SIGFPE",
        libc::SIGPIPE => "SIGPIPE",
        _ => return format!("signal {signal}"),
    };
    name.to_string()
}

/// The last line of a log, at most 200 characters of it.
pub(super) fn last_line(log: &Path) -> String {
    std::fs::read_to_string(log)
        .ok()
        .and_then(|l| l.lines().last().map(|l| l.chars().take(200).collect()))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exits_are_described_by_signal_name_or_status() {
        assert_eq!(describe_exit(ExitStatus::from_raw(libc::SIGKILL)), "SIGKILL");
        assert_eq!(describe_exit(ExitStatus::from_raw(2 << 8)), "exit status 2");
        assert_eq!(describe_exit(ExitStatus::from_raw(64)), "signal 64");
    }
}
