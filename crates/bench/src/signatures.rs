//! What RFC 6940's signatures cost a REGISTER through the overlay (issue
//! 37 §1): how many signatures the peers made and checked per REGISTER,
//! counted by the peers themselves (`p2psip_signatures_made_total`,
//! `p2psip_signatures_checked_total`), times what one costs through the
//! peer's own code on this machine. That product is the part of the CPU
//! per REGISTER that no implementation making the same signatures avoids.

use crate::admin;
use anyhow::{Context, Result};
use node::node_dir::NodeDir;
use overlay::{Security, Signer};
use serde::Serialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Instant;

/// The signature work of one REGISTER through the overlay.
#[derive(Debug, Clone, Serialize)]
pub struct SignatureCost {
    pub made_per_register: f64,
    pub checked_per_register: f64,
    /// µs per signature and per check: the median of [`BATCHES`] batches.
    pub sign_us: f64,
    pub check_us: f64,
    /// `made × sign + checked × check`, µs per REGISTER.
    pub floor_us: f64,
}

const BATCHES: usize = 5;
const PER_BATCH: usize = 1_000;
/// About a Store of one registration: what a signature covers.
pub const INPUT_BYTES: usize = 600;

/// Signatures made and checked so far, summed over the peers.
pub fn counted(admins: &[SocketAddr]) -> Result<(f64, f64)> {
    let mut sums = (0.0, 0.0);
    for admin in admins {
        let text = admin::get(*admin, "/metrics")?;
        sums.0 += admin::sample(&text, "p2psip_signatures_made_total").context("no signatures_made metric")?;
        sums.1 += admin::sample(&text, "p2psip_signatures_checked_total").context("no signatures_checked metric")?;
    }
    Ok(sums)
}

/// The cost per REGISTER of `made` and `checked` signatures over
/// `registers`, priced by signing as the node of `signer` and checking as
/// the node of `checker` (two enrolled node directories).
pub fn cost(made: f64, checked: f64, registers: u64, signer: &Path, checker: &Path) -> Result<SignatureCost> {
    let (sign_us, check_us) = price(signer, checker)?;
    let registers = registers.max(1) as f64;
    let (made_per_register, checked_per_register) = (made / registers, checked / registers);
    Ok(SignatureCost {
        made_per_register,
        checked_per_register,
        sign_us,
        check_us,
        floor_us: made_per_register * sign_us + checked_per_register * check_us,
    })
}

/// µs per signature and per check through the peer's `CertSecurity`.
/// Every input differs, so no check is answered from the peer's memory
/// of signatures it has seen; the signer's certificate is known, as it
/// is in a running overlay.
fn price(signer: &Path, checker: &Path) -> Result<(f64, f64)> {
    let signer = NodeDir::load(signer)?.security()?;
    let checker = NodeDir::load(checker)?.security()?;
    let certificates = signer.certificates();
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut signs, mut checks) = (Vec::new(), Vec::new());
    for batch in 0..BATCHES {
        let inputs: Vec<Vec<u8>> = (0..PER_BATCH)
            .map(|i| {
                let mut input = vec![0x5a; INPUT_BYTES];
                input[..16].copy_from_slice(&((batch * PER_BATCH + i) as u128).to_be_bytes());
                input
            })
            .collect();
        let start = Instant::now();
        let signatures: Vec<_> = inputs.iter().map(|i| signer.sign(i)).collect();
        signs.push(start.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64);
        let start = Instant::now();
        for (input, signature) in inputs.iter().zip(&signatures) {
            checker
                .verify(input, signature, &certificates)
                .map_err(|e| anyhow::anyhow!("a signature did not verify: {e}"))?;
        }
        checks.push(start.elapsed().as_secs_f64() * 1e6 / PER_BATCH as f64);
    }
    Ok((median(signs), median(checks)))
}
