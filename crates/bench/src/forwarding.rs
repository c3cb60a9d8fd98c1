//! Issue 6 §4: the messages per second one peer forwards on loopback.
//!
//! The bench enrolls two nodes of its own in a one-peer overlay, a sender
//! and a sink, and links each to the peer over TLS with the framing header
//! (RFC 6940 §6.6, the peer's own link code). The sender's messages name
//! the sink's Node-ID; the peer has a connection to it, so it forwards
//! them there (§6.1.2): reads the forwarding header, checks TTL and loops,
//! pushes a via entry, re-encodes, and never verifies the signature, as
//! no intermediate peer does. The sink counts what arrives. The sender
//! keeps a bounded window in flight, below the peer's per-link queue, so
//! the figure is the rate the peer keeps up with, not a queue overflowing.

use crate::admin;
use crate::latency::{percentiles, Percentiles};
use crate::rig::Demo;
use anyhow::{bail, Context, Result};
use node::link::{run_link, LinkEvent, LinkTls, LINK_QUEUE};
use node::node_dir::NodeDir;
use reload_wire::{overlay_hash, samples, Destination, ForwardingHeader, Message, NodeId};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Messages in flight between the sender and the sink: half the peer's
/// queue per link, so none is dropped there.
const WINDOW: u64 = LINK_QUEUE as u64 / 2;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Forwarding {
    /// The message forwarded (a sample StoreReq, the codec benchmark's).
    pub message: &'static str,
    pub message_bytes: usize,
    pub window: u64,
    pub messages: u64,
    pub seconds: f64,
    /// Messages the sink received per second.
    pub per_s: f64,
    /// The peer's own count of what it forwarded in that time.
    pub peer_counted: f64,
    /// The forwarding peer's CPU (user + system) over the run, % of one
    /// core, and per message: what one core could forward is 1 s over it.
    pub peer_cpu_percent: f64,
    pub peer_cpu_us_per_message: f64,
    /// One message at a time, one every [`PACED_GAP`]: sender to sink
    /// through the peer, timed in this process (both ends share its
    /// clock). This is half an overlay hop (issue 6 §3): the request's
    /// way through one more peer.
    pub paced: Percentiles,
    pub paced_gap_ms: f64,
    /// The peer's CPU over the paced run, per message: next to the
    /// latency, how much of it the peer computes.
    pub paced_peer_cpu_us_per_message: f64,
    /// The machine's floor measured just before: a datagram to another
    /// idle process and back at the same pace. A forward wakes the peer
    /// and then this process, as that round trip wakes two processes.
    pub wake_round_trip: Percentiles,
}

/// The pace of the one-at-a-time run: the call-setup benchmark's 50
/// calls per second.
const PACED_GAP: Duration = Duration::from_millis(20);
/// Messages timed one at a time.
const PACED_MESSAGES: usize = 500;

/// One end of the bench: a node enrolled into `dir`, linked to the peer.
struct End {
    me: NodeId,
    /// The overlay's hash, for forwarding headers.
    overlay: u32,
    outgoing: mpsc::Sender<Vec<u8>>,
    events: mpsc::Receiver<LinkEvent>,
}

async fn link_to(dir: &Path, peer: SocketAddr) -> Result<End> {
    let node = NodeDir::load(dir).with_context(|| format!("loading {}", dir.display()))?;
    let me = node.info.node_ids[0];
    let ctx = Arc::new(node.config.overlay_config().decode_context()?);
    let overlay = overlay_hash(&node.config.instance_name);
    let tls = LinkTls::new(
        node.config.trust_store(),
        node.cert_der.clone(),
        node::pki::rustls_key(&node.key),
    )?;
    let tcp = tokio::net::TcpStream::connect(peer).await?;
    tcp.set_nodelay(true)?;
    let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(peer.ip().into());
    let stream = tls.connect(name, tcp).await.context("TLS to the peer")?;
    let Some(&their) = tls.peer_node_ids(stream.get_ref().1.peer_certificates()).first() else {
        bail!("the peer's certificate carries no Node-ID");
    };
    let (out_tx, out_rx) = mpsc::channel(LINK_QUEUE);
    let (ev_tx, ev_rx) = mpsc::channel(LINK_QUEUE);
    tokio::spawn(run_link(0, their, stream, ctx, out_rx, ev_tx));
    Ok(End {
        me,
        overlay,
        outgoing: out_tx,
        events: ev_rx,
    })
}

/// The sample StoreReq addressed to the sink; each message sent is it
/// encoded again with the next transaction id, as a sender would.
struct ToSink(Message);

impl ToSink {
    fn new(sink: &End) -> Result<ToSink> {
        let (_, body) = samples::bodies()
            .into_iter()
            .find(|(name, _)| *name == "store_req")
            .context("no store_req sample")?;
        Ok(ToSink(Message {
            forwarding_header: ForwardingHeader::new(sink.overlay, 0, vec![Destination::Node(sink.me)]),
            ..samples::message(&body, 0)
        }))
    }

    fn bytes(&mut self, tid: u64) -> Result<Vec<u8>> {
        self.0.forwarding_header.transaction_id = tid;
        Ok(self.0.to_bytes()?)
    }
}

/// Measures the peer of the one-peer `demo` for `seconds`; `work` holds the
/// bench's two node directories.
pub fn measure(demo: &Demo, work: &Path, seconds: f64) -> Result<Forwarding> {
    let ca = std::fs::read_to_string(demo.node_dirs[0].join("ca.crt"))?;
    let pin = node::enrollment::CaPin::Certificate(node::pki::pem_to_der(&ca)?);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (sender_dir, sink_dir) = (work.join("sender"), work.join("sink"));
    for dir in [&sender_dir, &sink_dir] {
        // The peer's operator account enrolls a node of its own.
        rt.block_on(node::enrollment::enroll(
            &demo.enrollment,
            pin.clone(),
            "peer0",
            &demo.password,
            dir,
        ))
        .with_context(|| format!("enrolling {}", dir.display()))?;
    }
    let wake_round_trip = crate::wake::round_trips(PACED_MESSAGES, PACED_GAP)?;
    let peer = demo.reload[0];
    let pid = demo.pids[0];
    rt.block_on(async {
        let sender = link_to(&sender_dir, peer).await?;
        let mut sink = link_to(&sink_dir, peer).await?;
        let mut to_sink = ToSink::new(&sink)?;
        let message_bytes = to_sink.bytes(0)?.len();

        // The peer learns of both links as they come up; until then a
        // message for the sink goes nowhere. Send until one arrives.
        let start = Instant::now();
        let mut tid = 1u64;
        loop {
            sender.outgoing.send(to_sink.bytes(tid)?).await?;
            tid += 1;
            match tokio::time::timeout(Duration::from_millis(200), sink.events.recv()).await {
                Ok(Some(LinkEvent::Message { .. })) => break,
                Ok(Some(LinkEvent::Closed { why, .. })) => bail!("the peer closed the sink's link: {why}"),
                // This end sends no keepalives: it is never idle for long.
                Ok(Some(LinkEvent::Idle { .. } | LinkEvent::Silent { .. } | LinkEvent::Resumed { .. })) => {}
                Ok(None) => bail!("the sink's link ended"),
                Err(_) => anyhow::ensure!(
                    start.elapsed() < Duration::from_secs(10),
                    "the peer forwarded nothing to the sink in 10 s"
                ),
            }
        }
        // Stragglers of the readiness probe arrive before the count starts.
        while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), sink.events.recv()).await {}

        let counted_before = forwarded(demo.admin[0])?;
        let cpu_before = crate::footprint::cpu_seconds(pid)?;
        let start = Instant::now();
        let (mut sent, mut received) = (0u64, 0u64);
        let run = Duration::from_secs_f64(seconds);
        while start.elapsed() < run {
            while sent - received < WINDOW {
                sender.outgoing.send(to_sink.bytes(tid)?).await?;
                tid += 1;
                sent += 1;
            }
            received += receive(&mut sink, Duration::from_secs(5)).await?;
        }
        while received < sent {
            received += receive(&mut sink, Duration::from_secs(5)).await?;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let cpu = crate::footprint::cpu_seconds(pid)? - cpu_before;
        let peer_counted = forwarded(demo.admin[0])? - counted_before;

        let paced_cpu_before = crate::footprint::cpu_seconds(pid)?;
        let mut one_way_ms = Vec::with_capacity(PACED_MESSAGES);
        for _ in 0..PACED_MESSAGES {
            tokio::time::sleep(PACED_GAP).await;
            let bytes = to_sink.bytes(tid)?;
            tid += 1;
            let sent = Instant::now();
            sender.outgoing.send(bytes).await?;
            receive(&mut sink, Duration::from_secs(1)).await?;
            one_way_ms.push(sent.elapsed().as_secs_f64() * 1e3);
        }
        let paced_cpu = crate::footprint::cpu_seconds(pid)? - paced_cpu_before;
        Ok(Forwarding {
            message: "store_req",
            message_bytes,
            window: WINDOW,
            messages: received,
            seconds: elapsed,
            per_s: received as f64 / elapsed,
            peer_counted,
            peer_cpu_percent: 100.0 * cpu / elapsed,
            peer_cpu_us_per_message: 1e6 * cpu / received.max(1) as f64,
            paced: percentiles(&one_way_ms).context("no paced messages")?,
            paced_gap_ms: PACED_GAP.as_secs_f64() * 1e3,
            paced_peer_cpu_us_per_message: 1e6 * paced_cpu / PACED_MESSAGES as f64,
            wake_round_trip,
        })
    })
}

fn forwarded(admin: SocketAddr) -> Result<f64> {
    admin::metric(admin, "p2psip_messages_forwarded_total{message=\"store_req\"}")
}

/// Waits for the sink's next messages: how many arrived. The link's
/// liveness reports are not messages (this end sends no keepalives).
async fn receive(sink: &mut End, limit: Duration) -> Result<u64> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut n = 0;
    loop {
        let event = if n == 0 {
            match tokio::time::timeout_at(deadline, sink.events.recv()).await {
                Ok(Some(event)) => event,
                Ok(None) => bail!("the sink's link ended"),
                Err(_) => bail!("nothing forwarded for {limit:?}: the peer dropped messages"),
            }
        } else {
            match sink.events.try_recv() {
                Ok(event) => event,
                Err(_) => return Ok(n),
            }
        };
        match event {
            LinkEvent::Message { .. } => n += 1,
            LinkEvent::Closed { why, .. } => bail!("the peer closed the sink's link: {why}"),
            LinkEvent::Idle { .. } | LinkEvent::Silent { .. } | LinkEvent::Resumed { .. } => {}
        }
    }
}
