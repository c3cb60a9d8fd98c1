//! `p2psip`: serverless SIP telephony over a RELOAD overlay.

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use reload_wire::pcap::{PcapWriter, Transport, RELOAD_PORT};
use reload_wire::{samples, DecodeContext, FramedMessage, Message};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

mod config_cmd;
mod demo;
mod dns_records;
mod overlay_cmds;
mod plot;
mod sim_cmd;
mod sip_cert_cmd;
mod user_cmd;

/// The simulator allocates and frees millions of small buffers a second;
/// mimalloc does that markedly faster than the system allocator.
/// Transparent huge pages are off (`huge_pages(false)`) unless a command
/// turns them back on.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "p2psip",
    version,
    about = "Serverless SIP telephony over a RELOAD (RFC 6940) overlay"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Encode one message of every RELOAD method, decode each back, print a
    /// table, and write them as a pcap that Wireshark dissects.
    Samples {
        /// Where to write the capture.
        #[arg(long, default_value = "reload-samples.pcap")]
        pcap: PathBuf,
        /// Carry the frames over one TCP connection instead of UDP datagrams.
        #[arg(long)]
        tcp: bool,
        /// Also write each message (and each framed message) as a file in
        /// DIR/decode_message and DIR/decode_framing: seeds for the fuzzers.
        #[arg(long, value_name = "DIR")]
        corpus: Option<PathBuf>,
    },
    /// Run N overlay peers in the deterministic simulator (Chord-reload over
    /// a simulated network with latency, loss and churn) and report lookups,
    /// hops, data loss and maintenance traffic.
    Sim(sim_cmd::SimArgs),
    /// Create a new overlay: CA, signed configuration document (RFC 6940
    /// §11.1) and enrollment accounts.
    Init(overlay_cmds::InitArgs),
    /// Serve the configuration document and certificate enrollment over
    /// HTTPS (RFC 6940 §11.2-§11.3).
    EnrollmentServer(overlay_cmds::ServerArgs),
    /// Fetch and verify an overlay's configuration, enroll, and store this
    /// node's key, certificate and configuration in a directory.
    Enroll(overlay_cmds::EnrollArgs),
    /// Run a peer: join the overlay over TLS links, route, store, and leave
    /// gracefully on SIGTERM or Ctrl-C.
    Peer(overlay_cmds::PeerArgs),
    /// Show a running peer's state (through its --admin API).
    Status(overlay_cmds::StatusArgs),
    /// Walk the whole overlay from one peer (Probe, RFC 6940 §6.4.2.5) and
    /// list every peer with its uptime, stored resources and ring share.
    Ring(overlay_cmds::RingArgs),
    /// Run a whole local overlay: an enrollment server and N peers, each
    /// its own process on 127.0.0.1; writes DIR/demo.json; Ctrl-C stops all.
    Demo(demo::DemoArgs),
    /// Add, remove, list and re-password accounts: an overlay directory's
    /// enrollment accounts, or the SIP users of a node directory (a
    /// running peer takes the change at once).
    User(user_cmd::UserArgs),
    /// Show the overlay's configuration document, or publish a new one
    /// (RFC 6940 §6.5.4 ConfigUpdate to running peers).
    Config(config_cmd::ConfigArgs),
    /// Issue a certificate for the overlay's SIP domain from its CA, for
    /// phones' SIP over TLS (`peer --sip-tls`).
    SipCert(sip_cert_cmd::SipCertArgs),
    /// Print the DNS records (NAPTR, SRV, A/AAAA) that let other SIP
    /// domains reach the overlay's users through its proxy peers.
    DnsRecords(dns_records::DnsRecordsArgs),
    /// Decode a framed or bare RELOAD message given as hex and print it.
    Decode {
        /// Hex bytes (whitespace allowed).
        hex: String,
        /// NodeIdLength of the overlay (16 to 20).
        #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u8).range(16..=20))]
        node_id_length: u8,
    },
}

fn main() -> ExitCode {
    huge_pages(false);
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("p2psip: {}", one_line(&e));
            ExitCode::from(2)
        }
    }
}

/// Whether this process may use transparent huge pages (prctl(2)
/// PR_SET_THP_DISABLE), where the system allows them at all. mimalloc asks
/// for them for its arenas. An idle peer then held 6-12 MB of 2 MB pages
/// for a few hundred KB of data (RSS 15.7 MB with them, 10.2 MB without),
/// so they are off by default. The simulator turns them on: its peers'
/// state spans gigabytes touched at random, and 2 MB pages spare it most
/// of the address-translation misses (decision 0011). Failing leaves the
/// setting as it was, which only costs memory or speed.
pub fn huge_pages(on: bool) {
    // SAFETY: PR_SET_THP_DISABLE only sets a flag of this process.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, libc::c_ulong::from(!on), 0, 0, 0);
    }
}

/// mimalloc's `mi_option_generic_collect` (v3 `mimalloc.h`): every this
/// many allocations that miss a thread's free lists, it walks every page
/// of the thread's heap to collect frees from other threads.
const MI_OPTION_GENERIC_COLLECT: libc::c_int = 34;

/// The option's default in mimalloc v3; a different value at that index
/// means the enum moved, and the option is left alone.
const MI_GENERIC_COLLECT_DEFAULT: libc::c_long = 10_000;

unsafe extern "C" {
    fn mi_option_get(option: libc::c_int) -> libc::c_long;
    fn mi_option_set(option: libc::c_int, value: libc::c_long);
}

/// Makes mimalloc's periodic heap walk 100 times rarer. The simulator's
/// heaps hold gigabytes of pages; at 100k peers the walk took 3 % of the
/// main thread (decision 0018). Frees from other threads are still
/// collected page by page as each page runs out.
pub fn rare_heap_walks() {
    // SAFETY: mi_option_get and mi_option_set read and write one option
    // of the allocator, checked to be the one meant by its default.
    unsafe {
        if mi_option_get(MI_OPTION_GENERIC_COLLECT) == MI_GENERIC_COLLECT_DEFAULT {
            mi_option_set(MI_OPTION_GENERIC_COLLECT, 100 * MI_GENERIC_COLLECT_DEFAULT);
        }
    }
}

/// The error and its causes on one line, each cause once: library errors
/// often quote their source in their own message already.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
    }
    line
}

/// Bad arguments get one line saying what is wrong and where to look, and
/// exit status 2; `--help` and `--version` print as usual.
fn usage_error(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
            ExitCode::from(2)
        } else {
            ExitCode::SUCCESS
        };
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    eprintln!(
        "p2psip: {}",
        usage_line(&e.render().to_string(), &subcommand_path(&args))
    );
    ExitCode::from(2)
}

/// `p2psip` and the subcommands named on the command line, as far as
/// they name subcommands: what to ask `--help` of.
fn subcommand_path(args: &[String]) -> String {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let mut path = vec!["p2psip".to_string()];
    for arg in args {
        let Some(sub) = cmd.find_subcommand(arg).cloned() else {
            if arg.starts_with('-') {
                continue;
            }
            break;
        };
        path.push(arg.clone());
        cmd = sub;
    }
    path.join(" ")
}

/// clap's rendered error as one line: its first line and the arguments
/// it lists below that (the missing ones, say), then which `--help` to
/// read.
fn usage_line(rendered: &str, command: &str) -> String {
    let mut lines = rendered.lines();
    let first = lines.next().unwrap_or("invalid arguments");
    let mut line = first.strip_prefix("error: ").unwrap_or(first).to_string();
    let listed: Vec<&str> = lines.take_while(|l| l.starts_with("  ")).map(str::trim).collect();
    if !listed.is_empty() {
        line = format!("{line} {}", listed.join(", "));
    }
    format!("{line} (see '{command} --help')")
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Samples { pcap, tcp, corpus } => samples_cmd(&pcap, tcp, corpus.as_deref()),
        Command::Decode { hex, node_id_length } => decode_cmd(&hex, node_id_length.into()),
        Command::Sim(args) => sim_cmd::run(args),
        Command::Init(args) => overlay_cmds::init(args),
        Command::EnrollmentServer(args) => overlay_cmds::enrollment_server(args),
        Command::Enroll(args) => overlay_cmds::enroll(args),
        Command::Peer(args) => overlay_cmds::peer(args),
        Command::Status(args) => overlay_cmds::status(args),
        Command::Ring(args) => overlay_cmds::ring(args),
        Command::Demo(args) => demo::demo(args),
        Command::User(args) => user_cmd::run(args),
        Command::Config(args) => config_cmd::run(args),
        Command::DnsRecords(args) => dns_records::run(args),
        Command::SipCert(args) => sip_cert_cmd::run(args),
    }
}

/// Logs to stderr; `P2PSIP_LOG` (error, warn, info, debug, trace) sets the
/// level, info by default; `P2PSIP_LOG_FORMAT=json` writes one JSON
/// object per line (timestamp, level, fields.message) for log collectors.
pub fn init_logging() {
    let level = std::env::var("P2PSIP_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_writer(std::io::stderr)
        .with_target(false);
    let _ = if std::env::var("P2PSIP_LOG_FORMAT").is_ok_and(|f| f == "json") {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

fn samples_cmd(path: &Path, tcp: bool, corpus: Option<&Path>) -> Result<()> {
    if let Some(dir) = corpus {
        for sub in ["decode_message", "decode_framing"] {
            std::fs::create_dir_all(dir.join(sub))
                .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
        }
    }
    let ctx = DecodeContext::default();
    let a: SocketAddrV4 = SocketAddrV4::new([127, 0, 0, 1].into(), 40000);
    let b: SocketAddrV4 = SocketAddrV4::new([127, 0, 0, 2].into(), RELOAD_PORT);
    let mut pcap = PcapWriter::new();
    println!("{:<4} {:<40} {:>6}  round-trip", "seq", "message", "bytes");
    let mut all = samples::messages();
    all.push(("ping_req (header features)", samples::header_features()));
    for (seq, (label, msg)) in all.iter().enumerate() {
        let bytes = msg.to_bytes().with_context(|| format!("encoding {label}"))?;
        let back = Message::decode(&bytes, &ctx).with_context(|| format!("decoding {label}"))?;
        let body_ok = back.message_contents.body(&ctx).is_ok();
        if &back != msg || !body_ok {
            bail!("{label} did not survive encode/decode");
        }
        let transport = if tcp { Transport::Tcp } else { Transport::Udp };
        let frame = pcap.reload_exchange(transport, a, b, seq as u32, &bytes)?;
        if let Some(dir) = corpus {
            std::fs::write(dir.join("decode_message").join(format!("sample-{seq:02}")), &bytes)?;
            std::fs::write(dir.join("decode_framing").join(format!("sample-{seq:02}")), &frame)?;
        }
        println!("{seq:<4} {label:<40} {:>6}  ok", bytes.len());
    }
    std::fs::write(path, pcap.into_bytes()).with_context(|| format!("cannot write {}", path.display()))?;
    println!(
        "\nwrote {} ({} messages); open it in Wireshark or run: tshark -r {} -V",
        path.display(),
        all.len(),
        path.display()
    );
    Ok(())
}

fn decode_cmd(hex: &str, node_id_length: usize) -> Result<()> {
    let clean: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    if !clean.len().is_multiple_of(2) {
        bail!("odd number of hex digits; give whole bytes, e.g. d2454c4f…");
    }
    let bytes = reload_wire::unhex(&clean).context("not hex; give bytes as hex digits, e.g. d2454c4f…")?;
    let ctx = DecodeContext::new(node_id_length, usize::MAX)?;
    let message = match FramedMessage::decode(&bytes, &ctx) {
        Ok(FramedMessage::Data { sequence, message }) => {
            println!("FramedMessage data, sequence {sequence}");
            message
        }
        Ok(ack @ FramedMessage::Ack { .. }) => {
            println!("{ack:#?}");
            return Ok(());
        }
        Err(_) => bytes,
    };
    let m = Message::decode(&message, &ctx).context("not a RELOAD message")?;
    println!("{:#?}", m.forwarding_header);
    match m.message_contents.body(&ctx) {
        Ok(body) => println!("{body:#?}"),
        Err(e) => println!("{:?} body undecodable: {e}", m.message_contents.message_code),
    }
    println!("{:#?}", m.security_block);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand and every option says what it is for in `--help`.
    #[test]
    fn every_option_has_a_description() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if id == "help" || id == "version" {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} --{}", arg.get_long().unwrap_or(id)));
                }
            }
            for sub in cmd.get_subcommands() {
                let here = format!("{path} {}", sub.get_name());
                if sub.get_about().is_none() && sub.get_name() != "help" {
                    missing.push(here.clone());
                }
                walk(sub, &here, missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "p2psip", &mut missing);
        assert!(missing.is_empty(), "no description: {missing:?}");
    }

    #[test]
    fn a_missing_argument_is_named_with_the_subcommand_to_ask() {
        let rendered = "error: the following required arguments were not provided:\n  --dir <DIR>\n  \
                        --overlay <OVERLAY>\n\nUsage: p2psip init --dir <DIR> --overlay <OVERLAY>\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            usage_line(rendered, "p2psip init"),
            "the following required arguments were not provided: --dir <DIR>, --overlay <OVERLAY> \
             (see 'p2psip init --help')"
        );
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(subcommand_path(&args(&["demo", "restart", "x"])), "p2psip demo restart");
        assert_eq!(
            subcommand_path(&args(&["--bogus", "peer", "--dir", "init"])),
            "p2psip peer"
        );
        assert_eq!(subcommand_path(&args(&["nonsense"])), "p2psip");
    }
}
