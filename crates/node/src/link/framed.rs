//! A link's life once its TLS handshake is done: Data and ACK frames
//! (RFC 6940 §6.6.2), and whether the peer still answers (§6.6.5, see
//! [`overlay::link_liveness`]).

use overlay::link_liveness::{LinkLiveness, LivenessSignal};
use reload_wire::framing::{encode_data, FrameDecoder, ReceivedWindow};
use reload_wire::{DecodeContext, FramedMessage, NodeId, Writer};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

/// What a link task reports to the peer's engine task.
#[derive(Debug)]
pub enum LinkEvent {
    Message {
        link: u64,
        peer: NodeId,
        bytes: Vec<u8>,
    },
    /// The link carried nothing for a while: the engine should send a
    /// keepalive over it ([`overlay::OverlayNode::keepalive`]).
    Idle {
        link: u64,
        peer: NodeId,
    },
    /// A Data frame waited `waited_ms` for its ACK: the peer is taken
    /// out of the routing table; the connection stays open in case it
    /// comes back (§6.6.5).
    Silent {
        link: u64,
        peer: NodeId,
        waited_ms: u64,
    },
    /// A link reported silent is acknowledging again.
    Resumed {
        link: u64,
        peer: NodeId,
    },
    Closed {
        link: u64,
        peer: NodeId,
        why: String,
    },
}

/// The largest message a Data frame carries: its length is 24 bits
/// (§6.6.4). The engine never makes one this large; one that is, is
/// dropped rather than sent with a wrong length.
const MAX_FRAMED_MESSAGE: usize = 0xff_ffff;

/// Queued messages are gathered into one write up to about this many
/// bytes.
pub(super) const BATCH_BYTES: usize = 64 * 1024;

/// Room for each read from a link: one TLS record's plaintext.
const READ_ROOM: usize = 16 * 1024;

/// Runs one established link until it fails or `outgoing` closes: frames
/// outgoing messages as Data (§6.6.4), acknowledges every Data received
/// (one write for all the frames a read brought, after the engine had its
/// turn), reports each message, and watches whether the peer still
/// acknowledges (§6.6.5), also while a write waits on a full socket.
/// Every write is flushed; over a [`super::LinkTcp`] several frames go
/// out in one system call.
pub async fn run_link<S, E>(
    link: u64,
    peer: NodeId,
    stream: S,
    ctx: Arc<DecodeContext>,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
    events: mpsc::Sender<E>,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    E: From<LinkEvent>,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut decoder = FrameDecoder::new();
    let mut window = ReceivedWindow::new();
    let mut frames = DataFrames { sequence: 0 };
    let mut watch = Watch {
        link,
        peer,
        epoch: Instant::now(),
        liveness: LinkLiveness::new(0),
        events,
    };
    let why = loop {
        tokio::select! {
            read = rd.read_buf(decoder.input(READ_ROOM)) => {
                match read {
                    Ok(0) => break "closed by the peer".to_string(),
                    Ok(_) => {}
                    Err(e) => break e.to_string(),
                };
                let now = watch.now();
                let mut acks = Writer::new();
                loop {
                    match decoder.next_frame(&ctx) {
                        Ok(Some(FramedMessage::Data { sequence, message })) => {
                            watch.liveness.data_received(now);
                            window.on_data(sequence).encode(&mut acks);
                            if !watch.report(LinkEvent::Message { link, peer, bytes: message }).await {
                                return;
                            }
                        }
                        Ok(Some(FramedMessage::Ack { ack_sequence, .. })) => {
                            if watch.liveness.ack_received(now, ack_sequence).is_some()
                                && !watch.report(LinkEvent::Resumed { link, peer }).await
                            {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            // A broken frame stream cannot be resynchronised.
                            watch.report(LinkEvent::Closed { link, peer, why: format!("malformed frame: {e}") }).await;
                            return;
                        }
                    }
                }
                if !acks.is_empty() {
                    // The ACKs wait until the engine and the other links
                    // ran: a message this peer forwards leaves before the
                    // ACK wakes the previous hop, which would otherwise
                    // compete for the CPU with the forwarded message's
                    // path. Still "immediately" in §6.6.4's sense: within
                    // the same turn of the runtime, microseconds later.
                    // An answer queued for this link meanwhile goes out in
                    // the same write.
                    //
                    // Two yields: a yielded task runs again once the run
                    // queue is empty. The first lets the engine take the
                    // message; the daemon's engine is the runtime's main
                    // future, polled only then, and the link it wakes is
                    // queued behind this one. The second lets that link
                    // write first.
                    tokio::task::yield_now().await;
                    tokio::task::yield_now().await;
                    let mut batch: Vec<Vec<u8>> = acks.finish().into_iter().collect();
                    let first = outgoing.try_recv().ok();
                    frames.take(first, &mut outgoing, &mut watch, &mut batch);
                    if let Err(why) = watch.write(&mut wr, &batch).await {
                        break why;
                    }
                }
            }
            message = outgoing.recv() => {
                let Some(first) = message else {
                    let _ = wr.shutdown().await;
                    return;
                };
                let mut batch = Vec::new();
                frames.take(Some(first), &mut outgoing, &mut watch, &mut batch);
                if let Err(why) = watch.write(&mut wr, &batch).await {
                    break why;
                }
            }
            () = tokio::time::sleep_until(watch.deadline()) => {
                if let Err(why) = watch.on_timer().await {
                    break why;
                }
            }
        }
    };
    watch.report(LinkEvent::Closed { link, peer, why }).await;
}

/// A link's liveness (§6.6.5) on the link's own monotonic clock, and the
/// channel its findings go out on.
struct Watch<E> {
    link: u64,
    peer: NodeId,
    epoch: Instant,
    liveness: LinkLiveness,
    events: mpsc::Sender<E>,
}

impl<E: From<LinkEvent>> Watch<E> {
    /// Milliseconds since the link came up.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn deadline(&self) -> Instant {
        let far = Instant::now() + Duration::from_secs(3600);
        self.epoch
            .checked_add(Duration::from_millis(self.liveness.poll_timeout()))
            .map_or(far, |d| d.min(far))
    }

    /// False once the engine is gone.
    async fn report(&self, event: LinkEvent) -> bool {
        self.events.send(event.into()).await.is_ok()
    }

    /// What the liveness timer found; `Err` closes the link.
    async fn on_timer(&mut self) -> Result<(), String> {
        let (link, peer) = (self.link, self.peer);
        let event = match self.liveness.handle_timeout(self.now()) {
            None => return Ok(()),
            Some(LivenessSignal::Dead) => {
                return Err(format!(
                    "no acknowledgement for {} s",
                    overlay::link_liveness::RETAIN_SILENT_MS / 1000
                ))
            }
            Some(LivenessSignal::Keepalive) => LinkEvent::Idle { link, peer },
            Some(LivenessSignal::Silent { waited_ms }) => LinkEvent::Silent { link, peer, waited_ms },
            Some(LivenessSignal::Resumed) => LinkEvent::Resumed { link, peer },
        };
        if self.report(event).await {
            Ok(())
        } else {
            Err("the peer is stopping".into())
        }
    }

    /// Writes `frames`, each its own TLS record (what a dissector reading
    /// one frame per record expects) into the buffer under TLS, then
    /// flushes them in one go. A peer that stops reading fills the socket
    /// and the write waits; the liveness timer runs meanwhile, so the
    /// peer is still found silent, and dead.
    async fn write<W: tokio::io::AsyncWrite + Unpin>(&mut self, wr: &mut W, frames: &[Vec<u8>]) -> Result<(), String> {
        if frames.is_empty() {
            return Ok(());
        }
        let written = async {
            for frame in frames {
                wr.write_all(frame).await?;
            }
            wr.flush().await
        };
        tokio::pin!(written);
        loop {
            tokio::select! {
                done = &mut written => return done.map_err(|e| e.to_string()),
                () = tokio::time::sleep_until(self.deadline()) => self.on_timer().await?,
            }
        }
    }
}

/// The sending side of a link's Data frames (§6.6.4): each connection
/// numbers its messages from 1.
struct DataFrames {
    sequence: u32,
}

impl DataFrames {
    /// Frames `first` and whatever else is queued, up to [`BATCH_BYTES`],
    /// into `batch`, each noted as sent. Under load several messages wait
    /// and one flush sends them all: one system call instead of one each
    /// (most of a forwarding peer's time).
    fn take<E>(
        &mut self,
        first: Option<Vec<u8>>,
        outgoing: &mut mpsc::Receiver<Vec<u8>>,
        watch: &mut Watch<E>,
        batch: &mut Vec<Vec<u8>>,
    ) {
        let now = watch.epoch.elapsed().as_millis() as u64;
        let mut next = first;
        let mut batched = 0;
        while let Some(message) = next.take() {
            if message.len() <= MAX_FRAMED_MESSAGE {
                self.sequence = self.sequence.wrapping_add(1);
                let mut w = Writer::with_capacity(message.len() + 8);
                encode_data(&mut w, self.sequence, &message);
                if let Ok(frame) = w.finish() {
                    watch.liveness.data_sent(now, self.sequence);
                    batched += frame.len();
                    batch.push(frame);
                }
            }
            if batched < BATCH_BYTES {
                next = outgoing.try_recv().ok();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::link::LINK_QUEUE;

    /// Messages queued while the link is busy go out in one batch, each its
    /// own Data frame with the next sequence number (§6.6.4). A message
    /// received is reported and acknowledged.
    #[tokio::test]
    async fn queued_messages_go_out_as_consecutive_data_frames_and_data_is_acked() {
        let ctx = Arc::new(DecodeContext::new(16, 5000).unwrap());
        let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
        let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
        let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(LINK_QUEUE);
        for i in 0..3u8 {
            out_tx.send(vec![i; 100 + usize::from(i)]).await.unwrap();
        }
        let peer = NodeId::from_slice(&[7; 16]).unwrap();
        let link = tokio::spawn(run_link(9, peer, ours, ctx.clone(), out_rx, ev_tx));

        let mut decoder = FrameDecoder::new();
        let mut frames = Vec::new();
        let mut buf = [0u8; 4096];
        while frames.len() < 3 {
            let n = theirs.read(&mut buf).await.unwrap();
            assert!(n > 0, "the link closed early");
            decoder.push(&buf[..n]);
            while let Some(f) = decoder.next_frame(&ctx).unwrap() {
                frames.push(f);
            }
        }
        let want: Vec<FramedMessage> = (0..3u8)
            .map(|i| FramedMessage::Data {
                sequence: u32::from(i) + 1,
                message: vec![i; 100 + usize::from(i)],
            })
            .collect();
        assert_eq!(frames, want);

        let mut w = Writer::new();
        encode_data(&mut w, 41, b"hello");
        theirs.write_all(&w.finish().unwrap()).await.unwrap();
        match ev_rx.recv().await.unwrap() {
            LinkEvent::Message {
                link,
                peer: from,
                bytes,
            } => {
                assert_eq!((link, from, bytes.as_slice()), (9, peer, &b"hello"[..]));
            }
            other => panic!("{other:?}"),
        }
        let n = theirs.read(&mut buf).await.unwrap();
        decoder.push(&buf[..n]);
        assert!(
            matches!(
                decoder.next_frame(&ctx).unwrap(),
                Some(FramedMessage::Ack { ack_sequence: 41, .. })
            ),
            "the Data is acknowledged"
        );
        drop(out_tx);
        link.await.unwrap();
    }

    /// RFC 6940 §6.6.5 over a real link task, on tokio's paused clock: an
    /// idle link asks for a keepalive after 1 s; the keepalive sent and
    /// not acknowledged, the peer is reported silent 2 s later; an ACK
    /// brings it back; silent again, the link closes 30 s later.
    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_acknowledging_is_silent_then_resumed_then_closed() {
        let ctx = Arc::new(DecodeContext::new(16, 5000).unwrap());
        let (ours, mut theirs) = tokio::io::duplex(256 * 1024);
        let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
        let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(LINK_QUEUE);
        let peer = NodeId::from_slice(&[7; 16]).unwrap();
        let start = Instant::now();
        let _link = tokio::spawn(run_link(3, peer, ours, ctx.clone(), out_rx, ev_tx));
        let next = async |ev_rx: &mut mpsc::Receiver<LinkEvent>| {
            let e = ev_rx.recv().await.unwrap();
            (e, Instant::now().duration_since(start).as_millis())
        };

        let (e, at) = next(&mut ev_rx).await;
        assert!(matches!(e, LinkEvent::Idle { link: 3, .. }), "{e:?}");
        assert_eq!(at, 1_000);
        out_tx.send(b"ping".to_vec()).await.unwrap();
        let (e, at) = next(&mut ev_rx).await;
        assert!(matches!(e, LinkEvent::Silent { waited_ms: 2_000, .. }), "{e:?}");
        assert_eq!(at, 3_000, "noticed within 3 s");

        let ack = FramedMessage::Ack {
            ack_sequence: 1,
            received: 0,
        }
        .to_bytes()
        .unwrap();
        theirs.write_all(&ack).await.unwrap();
        let (e, _) = next(&mut ev_rx).await;
        assert!(matches!(e, LinkEvent::Resumed { link: 3, .. }), "{e:?}");

        out_tx.send(b"ping again".to_vec()).await.unwrap();
        let (e, silent_at) = next(&mut ev_rx).await;
        assert!(matches!(e, LinkEvent::Silent { .. }), "{e:?}");
        let (e, closed_at) = next(&mut ev_rx).await;
        match e {
            LinkEvent::Closed { why, .. } => assert_eq!(why, "no acknowledgement for 30 s"),
            other => panic!("{other:?}"),
        }
        assert_eq!(closed_at - silent_at, 30_000);
    }

    /// A peer that stops reading fills the socket and the link's write
    /// waits; the peer is still found silent and the link closed.
    #[tokio::test(start_paused = true)]
    async fn a_write_stuck_on_a_full_socket_does_not_hide_a_silent_peer() {
        let ctx = Arc::new(DecodeContext::new(16, 500_000).unwrap());
        let (ours, _theirs) = tokio::io::duplex(1024);
        let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
        let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(LINK_QUEUE);
        let peer = NodeId::from_slice(&[7; 16]).unwrap();
        let _link = tokio::spawn(run_link(4, peer, ours, ctx, out_rx, ev_tx));
        out_tx.send(vec![0; 100_000]).await.unwrap();
        assert!(matches!(ev_rx.recv().await.unwrap(), LinkEvent::Silent { .. }));
        assert!(matches!(ev_rx.recv().await.unwrap(), LinkEvent::Closed { .. }));
    }

    /// A stream that notes in a shared log, by name, each write it takes.
    struct Logged {
        inner: tokio::io::DuplexStream,
        name: &'static str,
        log: Arc<std::sync::Mutex<Vec<&'static str>>>,
    }

    impl tokio::io::AsyncRead for Logged {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    impl tokio::io::AsyncWrite for Logged {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let name = self.name;
            self.log.lock().unwrap().push(name);
            std::pin::Pin::new(&mut self.inner).poll_write(cx, buf)
        }
        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    /// A message the engine forwards from one link to another leaves before
    /// the first link acknowledges it: the ACK waits for the engine's turn
    /// and for the link it woke, so it never delays the forwarded
    /// message's path. The daemon runs its engine in the runtime's
    /// `block_on` future (polled only once the run queue is empty), the
    /// bench in a task; both must get this order.
    #[tokio::test]
    async fn a_forwarded_message_leaves_before_its_ack_when_the_engine_is_the_main_future() {
        assert_eq!(forward_one_message(false).await.first(), Some(&"data on B"));
    }

    #[tokio::test]
    async fn a_forwarded_message_leaves_before_its_ack_when_the_engine_is_a_task() {
        assert_eq!(forward_one_message(true).await.first(), Some(&"data on B"));
    }

    /// Runs two links and an engine that passes whatever arrives on link A
    /// out on link B; one Data frame arrives on A. The writes the links
    /// made, in order.
    async fn forward_one_message(engine_is_a_task: bool) -> Vec<&'static str> {
        let ctx = Arc::new(DecodeContext::new(16, 5000).unwrap());
        let log = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (a_ours, mut a_theirs) = tokio::io::duplex(64 * 1024);
        let (b_ours, mut b_theirs) = tokio::io::duplex(64 * 1024);
        let logged = |inner, name| Logged {
            inner,
            name,
            log: log.clone(),
        };
        let (a_out_tx, a_out_rx) = mpsc::channel(LINK_QUEUE);
        let (b_out_tx, b_out_rx) = mpsc::channel(LINK_QUEUE);
        let (ev_tx, mut ev_rx) = mpsc::channel::<LinkEvent>(LINK_QUEUE);
        let peer = NodeId::from_slice(&[7; 16]).unwrap();
        let link_a = tokio::spawn(run_link(
            1,
            peer,
            logged(a_ours, "ack on A"),
            ctx.clone(),
            a_out_rx,
            ev_tx.clone(),
        ));
        let link_b = tokio::spawn(run_link(
            2,
            peer,
            logged(b_ours, "data on B"),
            ctx.clone(),
            b_out_rx,
            ev_tx,
        ));
        let engine = async move {
            while let Some(LinkEvent::Message { bytes, .. }) = ev_rx.recv().await {
                b_out_tx.send(bytes).await.unwrap();
            }
        };
        // The far ends of both links: A's sends one Data frame, then both
        // read what they get.
        let far_ends = tokio::spawn({
            let ctx = ctx.clone();
            async move {
                let mut w = Writer::new();
                encode_data(&mut w, 1, b"pass me on");
                a_theirs.write_all(&w.finish().unwrap()).await.unwrap();
                let mut decoder = FrameDecoder::new();
                let mut buf = [0u8; 4096];
                let n = b_theirs.read(&mut buf).await.unwrap();
                decoder.push(&buf[..n]);
                assert!(matches!(
                    decoder.next_frame(&ctx).unwrap(),
                    Some(FramedMessage::Data { sequence: 1, message }) if message == b"pass me on"
                ));
                let n = a_theirs.read(&mut buf).await.unwrap();
                decoder.push(&buf[..n]);
                assert!(matches!(
                    decoder.next_frame(&ctx).unwrap(),
                    Some(FramedMessage::Ack { ack_sequence: 1, .. })
                ));
                (a_theirs, b_theirs)
            }
        });
        let (_a_theirs, b_theirs) = if engine_is_a_task {
            let engine = tokio::spawn(engine);
            let ends = far_ends.await.unwrap();
            engine.abort();
            ends
        } else {
            tokio::select! {
                _ = engine => panic!("the engine stopped"),
                ends = far_ends => ends.unwrap(),
            }
        };
        let writes = log.lock().unwrap().clone();
        drop(a_out_tx);
        link_a.await.unwrap();
        drop(b_theirs);
        link_b.await.unwrap();
        writes
    }
}
