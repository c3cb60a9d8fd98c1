//! The running peer's control socket, `NODE_DIR/control.sock`: how
//! `p2psip user add|remove|passwd` on a node directory tells the peer
//! running there to take the change at once. The line protocol here
//! ([`bind`], [`read_request`], [`exchange`]) also serves the demo's
//! socket. Only the directory's owner
//! can connect (the socket is mode 0600, inside a directory only one
//! peer uses, see [`crate::node_dir::DirLock`]). One request line, one
//! answer line, sent once the change is in effect.

use crate::peer::Input;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

/// The socket's file name in the node directory.
pub const SOCKET: &str = "control.sock";
/// The longest request line read, on any control socket.
pub const MAX_REQUEST: u64 = 64;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a client waits for the answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The request that makes the peer read `users/` again.
pub const RELOAD_USERS: &str = "reload-users";

/// Serves the control socket of the peer in `node_dir` until the engine
/// task goes away. Failing to bind is logged, not fatal: the peer then
/// takes account changes at its next start.
pub(crate) async fn serve(node_dir: &Path, engine: mpsc::Sender<Input>) {
    let path = node_dir.join(SOCKET);
    // A socket file left by a peer that died; this process holds the
    // directory's lock, so no live peer owns it.
    let listener = match bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(
                "no control socket at {} ({e}): account changes need a restart",
                path.display()
            );
            return;
        }
    };
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            return;
        };
        let engine = engine.clone();
        // One request at a time: the control socket is for an operator's
        // commands, not a service.
        let (read, mut write) = stream.into_split();
        let answer = match read_request(read).await {
            Some(line) if line == RELOAD_USERS => {
                let (tx, rx) = oneshot::channel();
                if engine.send(Input::ReloadUsers(tx)).await.is_err() {
                    return;
                }
                match rx.await {
                    Ok(Ok(done)) => format!("ok: {done}"),
                    Ok(Err(why)) => format!("error: {why}"),
                    Err(_) => "error: the peer is stopping".into(),
                }
            }
            Some(_) => format!("error: unknown request; the peer understands `{RELOAD_USERS}`"),
            None => format!("error: send one request line of at most {MAX_REQUEST} bytes"),
        };
        let _ = write.write_all(format!("{answer}\n").as_bytes()).await;
    }
}

/// What asking the peer in a node directory came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Asked {
    /// The peer took the request; its answer.
    Done(String),
    /// The peer refused it; why.
    Refused(String),
    /// No peer runs there (no socket, or nobody listening).
    NoPeer,
}

/// Asks the peer running in `node_dir` to `request`.
pub fn ask(node_dir: &Path, request: &str) -> std::io::Result<Asked> {
    let stream = match UnixStream::connect(node_dir.join(SOCKET)) {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            // No socket: either no peer runs, or one runs without it (it
            // could not bind it); the directory's lock tells which.
            return match crate::node_dir::DirLock::take(node_dir) {
                Ok(_free) => Ok(Asked::NoPeer),
                Err(crate::node_dir::NodeDirError::InUse { pid, .. }) => Ok(Asked::Refused(format!(
                    "the peer running there (pid {pid}) has no control socket; restart it to take the change"
                ))),
                Err(other) => Err(std::io::Error::other(other.to_string())),
            };
        }
        Err(e) => return Err(e),
    };
    Ok(match exchange(stream, request, ANSWER_TIMEOUT)? {
        Ok(done) => Asked::Done(done),
        Err(why) => Asked::Refused(why),
    })
}

/// Binds a control socket at `path`, only its owner may connect (mode
/// 0600). A file left there by a process that died is replaced.
pub fn bind(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use std::os::unix::fs::PermissionsExt;
    let _ = std::fs::remove_file(path);
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// The one request line a client sends, without its line break; `None`
/// if no whole line of at most [`MAX_REQUEST`] bytes came within
/// [`REQUEST_TIMEOUT`].
pub async fn read_request(read: impl tokio::io::AsyncRead + Unpin) -> Option<String> {
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(Ok(_)) if line.ends_with('\n') => Some(line.trim_end().to_string()),
        _ => None,
    }
}

/// Sends one request line on `stream` and reads the one answer line:
/// `Ok` with what follows `ok: `, `Err` with what follows `error: `.
pub fn exchange(mut stream: UnixStream, request: &str, timeout: Duration) -> std::io::Result<Result<String, String>> {
    stream.set_read_timeout(Some(timeout))?;
    writeln!(stream, "{request}")?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    let answer = answer.trim_end();
    Ok(match (answer.strip_prefix("ok: "), answer.strip_prefix("error: ")) {
        (Some(done), _) => Ok(done.to_string()),
        (None, Some(why)) => Err(why.to_string()),
        _ => Err(format!("unexpected answer {answer:?}")),
    })
}
