//! `p2psip sip-cert`: a certificate for the overlay's SIP domain, issued by
//! the overlay's CA, for phones' SIP over TLS (`peer --sip-tls`).

use anyhow::Result;
use clap::Args;
use node::overlay_dir::OverlayDir;
use std::path::PathBuf;

#[derive(Args)]
pub struct SipCertArgs {
    /// The overlay directory `p2psip init` made (its CA signs).
    #[arg(long)]
    dir: PathBuf,
    /// Where to write sip-tls.crt and sip-tls.key.
    #[arg(long)]
    out: PathBuf,
}

pub fn run(args: SipCertArgs) -> Result<()> {
    let overlay = OverlayDir::open(&args.dir)?;
    let (cert, key) = overlay.issue_sip_certificate(&args.out)?;
    println!("Certificate for the overlay's SIP domain: {}", cert.display());
    println!("Its key:                                  {}", key.display());
    println!(
        "Use: p2psip peer ... --sip-tls HOST:PORT --sip-tls-cert {} --sip-tls-key {}",
        cert.display(),
        key.display()
    );
    println!("Phones trust it once they trust {}", overlay.file("ca.crt").display());
    Ok(())
}
