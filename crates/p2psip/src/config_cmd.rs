//! `p2psip config show|publish`: the overlay's configuration document
//! (RFC 6940 §11.1) and updates to it (§6.5.4). `show` prints the
//! document; the operator edits a copy (new Kinds, limits, bootstrap
//! nodes, signers) and `publish` signs it as the next sequence, writes it
//! where the enrollment server serves it, and hands it to running peers,
//! which pass it on to the whole overlay in ConfigUpdates.

use crate::overlay_cmds::{host_port, http_request, runtime};
use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use node::overlay_dir::OverlayDir;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the configuration document: an overlay directory's (--dir),
    /// or the one a running peer runs on (--peer).
    Show {
        /// The overlay directory (`p2psip init --dir`).
        #[arg(long, value_name = "DIR", required_unless_present = "peer", conflicts_with = "peer")]
        dir: Option<PathBuf>,
        /// A running peer's --admin address.
        #[arg(long, value_name = "HOST:PORT", value_parser = host_port)]
        peer: Option<SocketAddr>,
    },
    /// Sign an edited configuration document as the overlay's next one
    /// (its sequence follows the current one), write it into the overlay
    /// directory, where the enrollment server serves it at once, and give
    /// it to running peers, which hand it on to every peer and client.
    Publish {
        /// The overlay directory (`p2psip init --dir`): its configuration
        /// signer signs the document.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The edited document (start from `p2psip config show`).
        document: PathBuf,
        /// A running peer's --admin address (repeatable): it takes the new
        /// document now and passes it on through the overlay. Without it,
        /// peers take it when they next fetch the configuration.
        #[arg(long = "peer", value_name = "HOST:PORT", value_parser = host_port)]
        peers: Vec<SocketAddr>,
    },
}

pub fn run(args: ConfigArgs) -> Result<()> {
    match args.action {
        ConfigAction::Show { dir: Some(dir), .. } => {
            print!("{}", OverlayDir::open(&dir)?.config_document()?);
            Ok(())
        }
        ConfigAction::Show { peer: Some(peer), .. } => {
            let document = runtime()?.block_on(http_request(
                peer,
                "GET",
                "/configuration",
                None,
                Duration::from_secs(10),
            ))?;
            print!("{document}");
            Ok(())
        }
        ConfigAction::Show { .. } => anyhow::bail!("give --dir DIR (an overlay directory) or --peer HOST:PORT"),
        ConfigAction::Publish { dir, document, peers } => publish(dir, document, peers),
    }
}

fn publish(dir: PathBuf, document: PathBuf, peers: Vec<SocketAddr>) -> Result<()> {
    let overlay = OverlayDir::open(&dir)?;
    let edited = std::fs::read_to_string(&document).with_context(|| format!("cannot read {}", document.display()))?;
    let (sequence, signed) = overlay.publish(&edited)?;
    println!(
        "configuration sequence {sequence} signed and written to {}",
        overlay.file("reload-config.xml").display()
    );
    let limit = node::config_doc::SignedConfiguration::parse(&signed, None)
        .map(|s| s.configuration.max_message_size as usize)
        .unwrap_or_default();
    // The forwarding header and the ConfigUpdate's own signature need room
    // beside the document (§6.5.4.1).
    if signed.len() + 1024 > limit {
        eprintln!(
            "warning: the signed document is {} bytes, too large for a ConfigUpdate under max-message-size {limit}: \
             peers will not pass it on (they fetch it from the enrollment server instead); \
             raise max-message-size (it also limits every other message)",
            signed.len()
        );
    }
    let mut failed = 0;
    for peer in &peers {
        let body = Some((node::config_doc::CONTENT_TYPE, signed.as_bytes()));
        let answer = runtime()?
            .block_on(http_request(
                *peer,
                "POST",
                "/configuration",
                body,
                Duration::from_secs(10),
            ))
            .and_then(|text| Ok(serde_json::from_str::<node::admin::Configured>(&text)?));
        match answer {
            Ok(c) if c.adopted => println!("peer {peer} runs sequence {} now and hands it on", c.sequence),
            Ok(c) => println!("peer {peer} already runs sequence {}", c.sequence),
            Err(e) => {
                failed += 1;
                eprintln!("peer {peer}: {e:#}");
            }
        }
    }
    if peers.is_empty() {
        println!("no --peer given: running peers take it when they next fetch the configuration");
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} peers did not take the configuration", peers.len());
    }
    Ok(())
}
