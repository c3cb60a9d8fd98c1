//! `p2psip user add|remove|list|passwd`: accounts, while peers run.
//!
//! On an overlay directory (`init`'s) the accounts are the enrollment
//! server's: who may enroll a node or a SIP user. The server reads them
//! on every request, so a change counts at once. On a node directory
//! (`enroll`'s) they are the SIP users the peer there serves; the running
//! peer is told through its control socket and answers once the change
//! is in effect (a removed user's registrations are withdrawn from the
//! overlay). Passwords come from `--password-file`, `P2PSIP_PASSWORD` or
//! a prompt, never from the command line, where other users of the
//! machine could read them.

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use node::control::{self, Asked};
use node::enrollment::{self, CaPin};
use node::overlay_dir::{check_user_name, Account, OverlayDir};
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct UserArgs {
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Subcommand)]
enum UserAction {
    /// Add an account. On an overlay directory: an enrollment account. On
    /// a node directory: a SIP user the peer there serves, enrolled with
    /// the overlay's enrollment server under its account of the same name
    /// and password; a running peer serves it at once.
    Add {
        /// The account's name, the user part of sip:NAME@OVERLAY.
        name: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        password: PasswordSource,
        /// The enrollment server (node directories only; default: the one
        /// the node's configuration names).
        #[arg(long, value_name = "URL")]
        server: Option<String>,
    },
    /// Remove an account. On a node directory the running peer stops
    /// serving the user at once and withdraws its registrations from the
    /// overlay.
    Remove {
        /// The account's name.
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the accounts.
    List {
        #[command(flatten)]
        target: Target,
    },
    /// Change an account's password (on a node directory: the SIP digest
    /// password its phones use).
    Passwd {
        /// The account's name.
        name: String,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        password: PasswordSource,
    },
}

#[derive(Args)]
struct Target {
    /// An overlay directory (`p2psip init`) or a node directory
    /// (`p2psip enroll`).
    #[arg(long)]
    dir: PathBuf,
}

/// Where a password comes from: a file, the environment, or a prompt.
#[derive(Args)]
pub struct PasswordSource {
    /// Read the password from the first line of FILE (`-` for standard
    /// input). Without it: $P2PSIP_PASSWORD, else a prompt.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
}

/// The environment variable a password may come from.
pub const PASSWORD_ENV: &str = "P2PSIP_PASSWORD";

impl PasswordSource {
    /// The password, from the file, the environment or a prompt (asked
    /// twice when `confirm`).
    pub fn read(&self, what: &str, confirm: bool) -> Result<String> {
        let password = if let Some(file) = &self.password_file {
            let text = if file.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin()).context("cannot read the password from standard input")?
            } else {
                std::fs::read_to_string(file)
                    .with_context(|| format!("cannot read --password-file {}", file.display()))?
            };
            text.lines().next().unwrap_or_default().to_string()
        } else if let Ok(p) = std::env::var(PASSWORD_ENV) {
            p
        } else {
            use std::io::IsTerminal;
            if !std::io::stdin().is_terminal() {
                bail!("no password: give --password-file FILE or set {PASSWORD_ENV} (no terminal to ask in)");
            }
            let first = rpassword::prompt_password(format!("{what}: ")).context("cannot read the password")?;
            if confirm && rpassword::prompt_password("again: ").context("cannot read the password")? != first {
                bail!("the two passwords differ; nothing changed");
            }
            first
        };
        if password.is_empty() {
            bail!("the password is empty; nothing changed");
        }
        Ok(password)
    }
}

enum Dir {
    Overlay(OverlayDir),
    Node(PathBuf),
}

fn open(dir: &Path) -> Result<Dir> {
    if dir.join("ca.key").exists() {
        return Ok(Dir::Overlay(OverlayDir::open(dir)?));
    }
    if dir.join("node.crt").exists() {
        return Ok(Dir::Node(dir.to_path_buf()));
    }
    bail!(
        "{} is neither an overlay directory (no ca.key) nor a node directory (no node.crt)",
        dir.display()
    )
}

pub fn run(args: UserArgs) -> Result<()> {
    match args.action {
        UserAction::Add {
            name,
            target,
            password,
            server,
        } => add(&name, &target.dir, &password, server),
        UserAction::Remove { name, target } => remove(&name, &target.dir),
        UserAction::List { target } => list(&target.dir),
        UserAction::Passwd { name, target, password } => passwd(&name, &target.dir, &password),
    }
}

fn add(name: &str, dir: &Path, password: &PasswordSource, server: Option<String>) -> Result<()> {
    check_user_name(name)?;
    match open(dir)? {
        Dir::Overlay(overlay) => {
            let mut accounts = overlay.accounts()?;
            if accounts.contains_key(name) {
                bail!("{name} has an account already; `p2psip user passwd {name}` changes its password");
            }
            let password = password.read(&format!("password for {name}"), true)?;
            accounts.insert(name.to_string(), Account::new(&password));
            overlay.save_accounts(&accounts)?;
            println!(
                "Added account {name} to {}: it can enroll now (`p2psip user add {name} --dir NODE_DIR`)",
                dir.display()
            );
            Ok(())
        }
        Dir::Node(node_dir) => {
            if node::node_dir::sip_user_names(&node_dir).iter().any(|u| u == name) {
                bail!("{name} is served here already; `p2psip user passwd {name}` changes its password");
            }
            let password = password.read(&format!("{name}'s enrollment password"), false)?;
            let server = match server {
                Some(s) => s,
                None => enrollment_base(&node_dir)?,
            };
            let ca = std::fs::read_to_string(node_dir.join("ca.crt"))
                .with_context(|| format!("cannot read {}", node_dir.join("ca.crt").display()))?;
            let pin = CaPin::Certificate(node::pki::pem_to_der(&ca)?);
            let done = crate::overlay_cmds::runtime()?
                .block_on(enrollment::enroll(&server, pin, name, &password, &node_dir))?;
            if !done.added_user {
                bail!("{name} is the node's own account, not a SIP user");
            }
            println!("Added SIP user {name} to {}", node_dir.display());
            tell_peer(&node_dir)
        }
    }
}

fn remove(name: &str, dir: &Path) -> Result<()> {
    check_user_name(name)?;
    match open(dir)? {
        Dir::Overlay(overlay) => {
            let mut accounts = overlay.accounts()?;
            if accounts.remove(name).is_none() {
                bail!("{} has no account {name}", dir.display());
            }
            overlay.save_accounts(&accounts)?;
            println!(
                "Removed account {name}: it can no longer enroll. Certificates issued to it stay valid until they \
                 expire; remove it from the node directories that serve it (`p2psip user remove {name} --dir NODE_DIR`)"
            );
            Ok(())
        }
        Dir::Node(node_dir) => {
            let node = node::node_dir::NodeDir::load(&node_dir)?;
            if node.info.user.split('@').next() == Some(name) {
                bail!("{name} is the node's own account; it stays as long as the node does");
            }
            if !node::node_dir::remove_sip_user(&node_dir, name)? {
                bail!("{} serves no SIP user {name}", node_dir.display());
            }
            println!("Removed SIP user {name} from {}", node_dir.display());
            tell_peer(&node_dir)
        }
    }
}

fn list(dir: &Path) -> Result<()> {
    match open(dir)? {
        Dir::Overlay(overlay) => {
            let enrolled = overlay.enrolled()?;
            for name in overlay.accounts()?.keys() {
                let keys = enrolled.get(name).map_or(0, Vec::len);
                println!("{name:<24} {keys} enrolled key(s)");
            }
        }
        Dir::Node(node_dir) => {
            for name in node::node_dir::sip_user_names(&node_dir) {
                println!("{name}");
            }
        }
    }
    Ok(())
}

fn passwd(name: &str, dir: &Path, password: &PasswordSource) -> Result<()> {
    check_user_name(name)?;
    match open(dir)? {
        Dir::Overlay(overlay) => {
            let mut accounts = overlay.accounts()?;
            if !accounts.contains_key(name) {
                bail!("{} has no account {name}", dir.display());
            }
            let password = password.read(&format!("new password for {name}"), true)?;
            accounts.insert(name.to_string(), Account::new(&password));
            overlay.save_accounts(&accounts)?;
            println!("Changed the enrollment password of {name}");
            Ok(())
        }
        Dir::Node(node_dir) => {
            if !node::node_dir::sip_user_names(&node_dir).iter().any(|u| u == name) {
                bail!("{} serves no SIP user {name}", node_dir.display());
            }
            let password = password.read(&format!("new SIP password for {name}"), true)?;
            node::node_dir::set_sip_password(&node_dir, name, &password)?;
            println!("Changed the SIP password of {name} in {}", node_dir.display());
            tell_peer(&node_dir)
        }
    }
}

/// The enrollment server's base URL from the node's configuration
/// (its enrollment-server element names the enroll URL itself).
fn enrollment_base(node_dir: &Path) -> Result<String> {
    let config = std::fs::read_to_string(node_dir.join("reload-config.xml"))
        .with_context(|| format!("cannot read {}", node_dir.join("reload-config.xml").display()))?;
    let signed = node::config_doc::SignedConfiguration::parse(&config, None)?;
    let url = signed
        .configuration
        .enrollment_servers
        .first()
        .context("the configuration names no enrollment server; give --server URL")?;
    let uri: http::Uri = url.parse().with_context(|| format!("enrollment server {url:?}"))?;
    Ok(format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or_default()
    ))
}

/// Tells the peer running in `node_dir`, if any, to take the change now.
pub fn tell_peer(node_dir: &Path) -> Result<()> {
    match control::ask(node_dir, control::RELOAD_USERS)
        .with_context(|| format!("cannot reach the peer running in {}", node_dir.display()))?
    {
        Asked::Done(now) => println!("The running peer took it: {now}"),
        Asked::Refused(why) => bail!("the running peer refused the change: {why}"),
        Asked::NoPeer => println!("No peer runs there now; the change counts when it starts"),
    }
    Ok(())
}
